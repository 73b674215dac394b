// My stacks: live status, Connect links, start, stop, delete, the logs of a service and its console.

import { api, every, session } from "../api.js";
import { act, announce, badge, h, keyed, showError } from "../dom.js";
import { idleNotice } from "../idle.js";
import { consolePanel } from "./console.js";

const POLL_MILLISECONDS = 2000;
const LOG_LINES = 200;
const CAN_START = new Set(["stopped", "error"]);
const CAN_STOP = new Set(["starting", "started", "error"]);
const CAN_DELETE = new Set(["stopped", "error"]);
// How the status messages of a service begin when, with no engine or command for it, the platform
// serves its folder instead of running it (shared/runtime/local.py, PREVIEW).
const PREVIEW = "File preview";
const REAL_APP =
  "This serves the service's folder read-only, not the app itself. For the real app, run Docker or Podman " +
  "so that workbench run starts the catalog's containers, or have the admin set WORKBENCH_LOCAL_COMMANDS.";

/** Whether the service runs as a file preview rather than as its app. */
export function isPreview(service) {
  return (service.statusMessages || []).some((message) => message.startsWith(PREVIEW));
}

/** The endpoints with a Connect link: an internal service's (a database's) have an address but no URL. */
export function connectable(service) {
  return (service.endpoints || []).filter((endpoint) => endpoint.url);
}
const CHANGED = {
  starting: "is starting",
  started: "is started",
  stopping: "is stopping",
  stopped: "is stopped",
  error: "failed: see its services for why",
};

export function render(main) {
  const list = h("div", { class: "stack-list", id: "stack-list", "aria-busy": "true" });
  const empty = h(
    "p",
    { class: "empty", hidden: true },
    "You have no stacks yet. ",
    h("a", { href: "#/catalog" }, "Create one from the catalog"),
    ".",
  );
  const logs = logPanel();
  const terminal = consolePanel();
  const confirm = confirmDialog();
  const statuses = new Map();
  const idle = idlePanel();
  const live = liveProgress();

  async function refresh() {
    const [stacks, account] = await Promise.all([api.stacks(), api.account(session.user).catch(() => null)]);
    idle.show(account, stacks.some((stack) => CAN_STOP.has(stack.status)));
    stacks.sort((a, b) => (a.createdTime || 0) - (b.createdTime || 0) || a.id.localeCompare(b.id));
    for (const stack of stacks) {
      const before = statuses.get(stack.id);
      if (before && before !== stack.status) announce(`${stack.name} (${stack.id}) ${CHANGED[stack.status]}.`);
      statuses.set(stack.id, stack.status);
    }
    empty.hidden = stacks.length > 0;
    list.setAttribute("aria-busy", "false");
    keyed(list, stacks, (stack) => stack.id, (stack) => card(stack, { refresh, logs, terminal, confirm, live }));
    live.follow(stacks);
    await logs.refresh();
  }

  main.append(
    h(
      "div",
      { class: "view-head" },
      h("h1", {}, "My stacks"),
      h("a", { class: "button", href: "#/catalog" }, "Create a stack"),
    ),
    h("p", { class: "lead" }, "Your applications with their services. The status updates by itself."),
    idle.element,
    empty,
    list,
    logs.element,
    terminal.element,
    confirm.element,
  );
  const stop = every(POLL_MILLISECONDS, refresh, (error) => showError(error.message));
  return () => {
    stop();
    live.close();
    terminal.close(); // leaving the view ends the shell
  };
}

/**
 * The idle shutdown's limit and, within its last hour while stacks run, a warning with a button whose
 * call counts as activity.
 */
function idlePanel() {
  const text = h("p", { class: "idle-limit", id: "idle-limit", hidden: true });
  const message = h("span", {});
  const keep = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: (event) =>
        act(event.currentTarget, async () => {
          show(await api.account(session.user)); // a call of the user's own: it counts as activity
        }),
    },
    "Keep them running",
  );
  const warning = h(
    "p",
    { class: "error idle-warning", id: "idle-warning", role: "status", hidden: true },
    message,
    " ",
    keep,
  );
  let running = false;
  function show(account, anyRunning = running) {
    running = anyRunning;
    const notice = account ? idleNotice(account, Date.now() / 1000) : null;
    text.hidden = !notice;
    text.textContent = notice?.text ?? "";
    warning.hidden = !(running && notice?.warning);
    message.textContent = notice?.warning ?? "";
  }
  return { element: h("div", {}, text, warning), show };
}

/**
 * Each starting stack's progress as its services report it, from the stack's event stream; the poll
 * goes on beside it (and redraws the stack once it is started), so a stream that fails leaves the page
 * as it was: updated every poll.
 */
function liveProgress() {
  const latest = new Map(); // service id -> its last message
  const following = new Map(); // stack id -> the stream's AbortController
  let closed = false;

  function show(ssid) {
    const line = document.querySelector(`[data-progress="${CSS.escape(ssid)}"]`);
    if (!line) return;
    line.textContent = latest.get(ssid) ?? "";
    line.dataset.live = "true";
  }

  async function follow(sid) {
    const controller = new AbortController();
    following.set(sid, controller);
    for (const ssid of latest.keys()) if (ssid.startsWith(`${sid}-`)) latest.delete(ssid); // a former start's
    let lastEventId = "";
    let ended = false;
    try {
      // A stream lasts a bounded time; it is resumed from its last event until the start is over.
      for (let attempt = 0; !ended && !closed && attempt < 20; attempt += 1) {
        await api.stackEvents(sid, {
          lastEventId,
          signal: controller.signal,
          onEvent(type, data, id) {
            lastEventId = id || lastEventId;
            if (type === "service" && data.message) {
              latest.set(data.id, data.message);
              show(data.id);
            } else if (type === "end") {
              ended = true;
            }
          },
        });
      }
    } catch {
      // the poll carries on
    } finally {
      following.delete(sid);
    }
  }

  return {
    /** The line a service's progress is shown in while its stack starts. */
    line(stack, service) {
      if (stack.status !== "starting") return null;
      const text = latest.get(service.id) ?? (service.statusMessages || []).at(-1) ?? "";
      const dataset = latest.has(service.id) ? { progress: service.id, live: "true" } : { progress: service.id };
      return h("p", { class: "service-progress", dataset, "aria-live": "polite" }, text);
    },
    follow(stacks) {
      for (const stack of stacks) {
        if (stack.status === "starting" && !following.has(stack.id) && !closed) follow(stack.id);
      }
    },
    close() {
      closed = true;
      for (const controller of following.values()) controller.abort();
    },
  };
}

function card(stack, { refresh, logs, terminal, confirm, live }) {
  const titleId = `stack-${stack.id}-title`;
  const start = h(
    "button",
    {
      type: "button",
      dataset: { focus: "start" },
      disabled: !CAN_START.has(stack.status),
      "aria-describedby": titleId,
      onclick: (event) =>
        act(event.currentTarget, async () => {
          await api.start(stack.id);
          announce(`Starting ${stack.name} (${stack.id})…`);
          await refresh();
        }),
    },
    "Start",
  );
  const stop = h(
    "button",
    {
      type: "button",
      class: "secondary",
      dataset: { focus: "stop" },
      disabled: !CAN_STOP.has(stack.status),
      "aria-describedby": titleId,
      onclick: (event) =>
        act(event.currentTarget, async () => {
          await api.stop(stack.id);
          announce(`Stopping ${stack.name} (${stack.id})…`);
          await refresh();
        }),
    },
    "Stop",
  );
  const remove = h(
    "button",
    {
      type: "button",
      class: "danger",
      dataset: { focus: "delete" },
      disabled: !CAN_DELETE.has(stack.status),
      "aria-describedby": titleId,
      onclick: (event) => {
        const button = event.currentTarget;
        confirm.ask(`Delete the stack “${stack.name}” (${stack.id})?`, "Delete", () =>
          act(button, async () => {
            await api.deleteStack(stack.id);
            logs.forget(stack.id);
            announce(`Deleted ${stack.name} (${stack.id}).`);
            await refresh();
          }),
        );
      },
    },
    "Delete",
  );
  return h(
    "article",
    { class: `card stack status-border-${stack.status}`, "aria-labelledby": titleId },
    h(
      "header",
      { class: "stack-head" },
      h("h2", { id: titleId }, stack.name || stack.key),
      h("span", { class: "stack-status" }, h("span", { class: "visually-hidden" }, "Status: "), badge(stack.status)),
    ),
    h("p", { class: "meta" }, `${stack.key} · id ${stack.id}`),
    h(
      "ul",
      { class: "services", "aria-label": `Services of ${stack.name}` },
      stack.services.map((service) => serviceItem(stack, service, logs, terminal, live)),
    ),
    h("div", { class: "actions" }, start, stop, remove),
  );
}

function serviceItem(stack, service, logs, terminal, live) {
  const endpoints = connectable(service);
  const preview = isPreview(service);
  const failed = service.status === "error" || service.status === "timeout";
  const messages = service.statusMessages || [];
  return h(
    "li",
    { class: "service" },
    h(
      "div",
      { class: "service-line" },
      h("span", { class: "service-name" }, service.service),
      preview ? h("span", { class: "badge preview" }, "file preview") : null,
      badge(service.status || (stack.status === "stopped" ? "stopped" : "waiting")),
      endpoints.map((endpoint, index) =>
        h(
          "a",
          {
            class: "button connect",
            href: endpoint.url,
            target: "_blank",
            rel: "noopener noreferrer",
            dataset: { focus: `connect-${service.id}-${index}` },
          },
          "Connect",
          h("span", { class: "visually-hidden" }, ` to ${service.service} of ${stack.name} (opens a new tab)`),
        ),
      ),
      h(
        "button",
        {
          type: "button",
          class: "link",
          dataset: { focus: `logs-${service.id}` },
          "aria-controls": "log-panel",
          onclick: () => logs.show(stack, service),
        },
        "Logs",
        h("span", { class: "visually-hidden" }, ` of ${service.service} in ${stack.name}`),
      ),
      // As the Go Workbench: a console for every started service.
      service.status === "ready" && !preview
        ? h(
            "button",
            {
              type: "button",
              class: "link",
              dataset: { focus: `console-${service.id}` },
              "aria-controls": "console-panel",
              onclick: () => terminal.open(stack, service).catch((error) => showError(error.message)),
            },
            "Console",
            h("span", { class: "visually-hidden" }, ` of ${service.service} in ${stack.name}`),
          )
        : null,
    ),
    live.line(stack, service),
    endpoints.length ? h("p", { class: "endpoint" }, endpoints.map((endpoint) => endpoint.url).join(" ")) : null,
    preview && stack.status !== "stopped" ? h("p", { class: "service-note" }, h("strong", {}, `${PREVIEW}: `), REAL_APP) : null,
    failed && messages.length
      ? h("p", { class: "service-error" }, h("strong", {}, `${service.service} ${service.status}: `), messages.at(-1))
      : null,
  );
}

function logPanel() {
  const title = h("h2", { id: "log-title" }, "Logs");
  const output = h("pre", { class: "logs", tabindex: "0", "aria-labelledby": "log-title" });
  const element = h(
    "section",
    { id: "log-panel", class: "card log-panel", "aria-labelledby": "log-title", hidden: true },
    h(
      "div",
      { class: "view-head" },
      title,
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: () => {
            const focusAfter = shown && document.querySelector(`[data-focus="logs-${CSS.escape(shown.id)}"]`);
            shown = null;
            element.hidden = true;
            focusAfter?.focus();
          },
        },
        "Close the logs",
      ),
    ),
    output,
  );
  let shown = null;

  async function refresh() {
    if (!shown) return;
    const ssid = shown.id;
    const text = await api.logs(ssid, LOG_LINES);
    if (shown?.id !== ssid) return;
    const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
    const next = typeof text === "string" ? text : JSON.stringify(text, null, 2);
    if (output.textContent !== next) {
      output.textContent = next;
      if (atBottom) output.scrollTop = output.scrollHeight;
    }
  }

  return {
    element,
    refresh,
    forget(sid) {
      if (shown && shown.stack === sid) {
        shown = null;
        element.hidden = true;
      }
    },
    show(stack, service) {
      shown = { id: service.id, stack: stack.id };
      const what = isPreview(service) ? ", a file preview" : "";
      title.textContent = `Logs of ${service.service} in ${stack.name} (${service.id})${what}`;
      output.textContent = "Loading…";
      element.hidden = false;
      refresh().catch((error) => showError(error.message));
      output.focus();
      element.scrollIntoView({ block: "nearest" });
    },
  };
}

function confirmDialog() {
  const question = h("p", { id: "confirm-question" });
  const yes = h("button", { type: "submit", class: "danger", value: "yes" }, "Delete");
  const element = h(
    "dialog",
    { class: "confirm", "aria-labelledby": "confirm-question" },
    h(
      "form",
      { method: "dialog" },
      question,
      h("p", {}, "This cannot be undone."),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "secondary", value: "no", autofocus: true }, "Cancel"),
        yes,
      ),
    ),
  );
  let confirmed = null;
  element.addEventListener("close", () => {
    const action = confirmed;
    confirmed = null;
    if (element.returnValue === "yes" && action) action();
  });
  return {
    element,
    ask(text, verb, action) {
      question.textContent = text;
      yes.textContent = verb;
      confirmed = action;
      element.returnValue = "";
      element.showModal();
    },
  };
}
