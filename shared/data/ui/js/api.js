// The Workbench HTTP API as the page uses it: the session's token, refreshed before it expires.

const TOKEN_KEY = "workbench.token";
const REFRESH_MARGIN_SECONDS = 300;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The claims of a JWT as the browser reads them (unverified: only to tell what to show). */
export function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/** The signed-in user, kept for this browser tab only (sessionStorage). */
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  get claims() {
    const token = this.token;
    return token ? claimsOf(token) : null;
  },
  get user() {
    return this.claims?.user ?? "";
  },
  get admin() {
    return Boolean(this.claims?.admin);
  },
  save(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

let signedOut = () => {};

/** Called with the server's reason when the session ends (a 401): the page goes back to the login. */
export function onSignedOut(handler) {
  signedOut = handler;
}

let refreshing = null;

async function freshToken() {
  const claims = session.claims;
  if (!claims || typeof claims.exp !== "number") return;
  if (claims.exp - Date.now() / 1000 > REFRESH_MARGIN_SECONDS) return;
  refreshing ??= request("GET", "/api/refresh_token", undefined, { refresh: false })
    .then((reply) => session.save(reply.token))
    .finally(() => {
      refreshing = null;
    });
  await refreshing;
}

// Calls made while a poll of `every` runs are the page's own, not the user's: the server does not
// count them as activity (the idle shutdown), or an open page would keep stacks running for ever.
let polling = 0;

/** Calls the API; resolves to the reply's JSON, rejects with an ApiError carrying the server's message. */
export async function request(method, path, body, { auth = true, refresh = true } = {}) {
  const background = polling > 0;
  if (auth && refresh) await freshToken();
  const headers = { Accept: "application/json" };
  if (background) headers["X-Workbench-Background"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = session.token;
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "The Workbench API cannot be reached; check the connection and try again.");
  }
  const text = await response.text();
  let reply = null;
  if (text) {
    try {
      reply = JSON.parse(text);
    } catch {
      reply = text;
    }
  }
  if (!response.ok) {
    const message =
      reply && typeof reply === "object" && typeof reply.Error === "string"
        ? reply.Error
        : `The server answered ${response.status} ${response.statusText}`.trim();
    // Only the first of several refused calls with this token ends the session.
    if (response.status === 401 && auth && token && session.token === token) {
      session.clear();
      signedOut(message);
    }
    throw new ApiError(response.status, message);
  }
  return reply;
}

export const api = {
  login: (username, password) =>
    request("POST", "/api/authenticate", { username, password }, { auth: false }),
  logout: () => request("DELETE", "/api/authenticate", undefined, { refresh: false }).catch(() => null),
  stacks: () => request("GET", "/api/stacks"),
  stackEvents: (sid, options) => followEvents(`/api/stacks/${encodeURIComponent(sid)}/events`, options),
  createStack: (stack) => request("POST", "/api/stacks", stack),
  start: (sid) => request("GET", `/api/start/${encodeURIComponent(sid)}`),
  stop: (sid) => request("GET", `/api/stop/${encodeURIComponent(sid)}`),
  deleteStack: (sid) => request("DELETE", `/api/stacks/${encodeURIComponent(sid)}`),
  logs: (ssid, lines) => request("GET", `/api/logs/${encodeURIComponent(ssid)}?lines=${lines}`),
  services: () => request("GET", "/api/services?catalog=all"),
  transfers: () => request("GET", "/api/transfers"),
  send: (transfer) => request("POST", "/api/transfers", transfer),
  // 200: the result at once (the platform reaches the homes); 202: a check the user's shovel carries out.
  verifyTransfer: (id) => request("POST", `/api/transfers/${encodeURIComponent(id)}/verify`),
  transferCheck: (id) => request("GET", `/api/transfers/${encodeURIComponent(id)}/verify`),
  exports: () => request("GET", "/api/exports"),
  exportFolder: (request_) => request("POST", "/api/exports", request_),
  accounts: () => request("GET", "/api/accounts"),
  account: (user) => request("GET", `/api/accounts/${encodeURIComponent(user)}`),
  // The decision e-mailed to the support address, taken with the account's token the admin sees.
  approve: (account) => request("GET", `/api/register/approve?${decision(account)}`, undefined, { auth: false }),
  deny: (account) => request("GET", `/api/register/deny?${decision(account)}`, undefined, { auth: false }),
  shovels: () => request("GET", "/api/shovels"),
  deadletters: () => request("GET", "/api/deadletters?limit=50"),
  register: (account) => request("POST", "/api/register", account, { auth: false }),
  verify: (u, t) => request("PUT", "/api/register/verify", { u, t }, { auth: false }),
  // The user name or e-mail as the userId form value the Go apiserver reads (here from the query).
  requestReset: (userId) =>
    request("POST", `/api/reset?${new URLSearchParams({ userId }).toString()}`, undefined, { auth: false }),
  changePassword: (token, password) =>
    fetchWithToken(token, "PUT", "/api/change_password", { password }),
};

/**
 * Follows a server-sent event stream with the session's token in the Authorization header (EventSource
 * cannot send one, and a token in the address would land in access logs): `onEvent(type, data, id)`
 * for each event. Resolves when the server ends the stream; rejects when it cannot be read.
 */
export async function followEvents(path, { lastEventId = "", onEvent, signal } = {}) {
  await freshToken();
  const headers = { Accept: "text/event-stream", "X-Workbench-Background": "1" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await fetch(path, { headers, cache: "no-store", credentials: "omit", signal });
  if (!response.ok || !response.body) throw new ApiError(response.status, `The server answered ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = { event: "message", data: [], id: "" };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") fields.data.push(text);
        else if (name === "event" || name === "id") fields[name] = text;
      }
      if (fields.data.length) onEvent(fields.event, JSON.parse(fields.data.join("\n")), fields.id);
    }
  }
}

function decision(account) {
  return new URLSearchParams({ u: account.id, t: account.token }).toString();
}

/** A call with a token that is not the session's (the reset token from a password e-mail). */
async function fetchWithToken(token, method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", Accept: "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  }).catch(() => {
    throw new ApiError(0, "The Workbench API cannot be reached; check the connection and try again.");
  });
  const reply = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, reply?.Error || `The server answered ${response.status}`);
  return reply;
}

/**
 * Runs `task` now and every `milliseconds` while the page is visible; the returned function stops it.
 * A task never overlaps itself; errors go to `failed` (once per distinct message).
 */
export function every(milliseconds, task, failed) {
  let timer = null;
  let stopped = false;
  let lastError = "";
  const tick = async () => {
    timer = null;
    if (stopped) return;
    if (document.visibilityState === "visible") {
      polling += 1;
      try {
        await task();
        lastError = "";
      } catch (error) {
        if (error.message !== lastError && !(error instanceof ApiError && error.status === 401)) failed?.(error);
        lastError = error.message;
      } finally {
        polling -= 1;
      }
    }
    if (!stopped) timer = setTimeout(tick, milliseconds);
  };
  const wake = () => {
    if (document.visibilityState === "visible" && timer !== null) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener("visibilitychange", wake);
  tick();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", wake);
  };
}
