// A terminal on a shell in one of the user's running services: xterm.js over the console websocket.

import { request, session } from "../api.js";
import { h, showError } from "../dom.js";

const VENDOR = "/ui/vendor";
const STDIN = 0;
const RESIZE = 4;
const encoder = new TextEncoder();

let stylesheet = null;
/** xterm's own stylesheet, linked once (a file, as the page's policy admits no inline style). */
function linkStylesheet() {
  if (stylesheet) return;
  stylesheet = h("link", { rel: "stylesheet", href: `${VENDOR}/xterm/xterm.css` });
  document.head.append(stylesheet);
}

// xterm.js styles its rows with <style> elements it writes at run time, which the page's policy (no
// inline style) refuses. While a terminal is open, a <style> the page makes is a hidden stand-in whose
// text goes into a constructed stylesheet instead, which the policy allows; none is made otherwise.
const makeElement = Document.prototype.createElement;
const sheets = new Set();
function constructedStyles(enabled) {
  if (!enabled) {
    delete document.createElement; // the prototype's own again
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((sheet) => !sheets.has(sheet));
    sheets.clear();
    return;
  }
  document.createElement = function (tag, options) {
    if (String(tag).toLowerCase() !== "style") return makeElement.call(this, tag, options);
    const standIn = makeElement.call(this, "span", options);
    standIn.hidden = true;
    const sheet = new CSSStyleSheet();
    sheets.add(sheet);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    let text = "";
    Object.defineProperty(standIn, "textContent", {
      get: () => text,
      set: (value) => {
        text = String(value ?? "");
        sheet.replaceSync(text);
      },
    });
    return standIn;
  };
}

function framed(channel, bytes) {
  const message = new Uint8Array(bytes.length + 1);
  message[0] = channel;
  message.set(bytes, 1);
  return message;
}

/** The console panel: one terminal at a time, opened by a service's Console button. */
export function consolePanel() {
  const title = h("h2", { id: "console-title" }, "Console");
  const screen = h("div", { class: "console-screen", id: "console-screen" });
  const state = h("p", { class: "console-state", role: "status" });
  let current = null;

  function close() {
    if (!current) return;
    const { socket, terminal, focusAfter, observer } = current;
    current = null;
    observer.disconnect();
    socket.close();
    terminal.dispose();
    constructedStyles(false);
    element.hidden = true;
    document.querySelector(focusAfter)?.focus();
  }

  const element = h(
    "section",
    { id: "console-panel", class: "card console-panel", "aria-labelledby": "console-title", hidden: true },
    h(
      "div",
      { class: "view-head" },
      title,
      h("button", { type: "button", class: "secondary", onclick: close }, "Close the console"),
    ),
    state,
    screen,
  );

  async function open(stack, service) {
    close();
    // Asked first, so that a refusal (no containers here, not running) is shown in words.
    const check = await request("GET", `/api/check_console?ssid=${encodeURIComponent(service.id)}`);
    if (!check.available) throw new Error(check.reason);
    linkStylesheet();
    const [{ Terminal }, { FitAddon }] = await Promise.all([
      import(`${VENDOR}/xterm/xterm.mjs`),
      import(`${VENDOR}/xterm-addon-fit/addon-fit.mjs`),
    ]);
    title.textContent = `Console of ${service.service} in ${stack.name} (${service.id})`;
    state.textContent = "Connecting…";
    element.hidden = false;
    screen.replaceChildren();
    constructedStyles(true);
    const terminal = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 2000 });
    const fit = new FitAddon();
    terminal.loadAddon(fit);
    terminal.open(screen);
    fit.fit();
    const address = new URL("/api/console", location.href);
    address.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    address.search = new URLSearchParams({ ssid: service.id, cols: terminal.cols, rows: terminal.rows });
    // A browser cannot set Authorization on a websocket: the token goes as an offered subprotocol.
    const socket = new WebSocket(address, ["workbench.console", `bearer.${session.token}`]);
    socket.binaryType = "arraybuffer";
    const observer = new ResizeObserver(() => fit.fit());
    observer.observe(screen);
    current = { socket, terminal, observer, focusAfter: `[data-focus="console-${CSS.escape(service.id)}"]` };

    socket.addEventListener("open", () => {
      state.textContent = `Connected: a shell in ${service.service}. Closing the console ends it.`;
      terminal.focus();
    });
    socket.addEventListener("message", (event) => {
      terminal.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    });
    socket.addEventListener("close", (event) => {
      if (current?.socket !== socket) return;
      state.textContent = event.code === 1000 ? "The shell has ended." : "The console could not be opened or was cut off.";
      if (event.code !== 1000) showError(`The console of ${service.id} closed (code ${event.code}).`);
    });
    terminal.onData((data) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(framed(STDIN, encoder.encode(data)));
    });
    terminal.onResize(({ cols, rows }) => {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(framed(RESIZE, encoder.encode(JSON.stringify({ Width: cols, Height: rows }))));
      }
    });
    element.scrollIntoView({ block: "nearest" });
  }

  return { element, open, close };
}
