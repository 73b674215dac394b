// Building the page: elements from data (text only, never HTML strings), messages, formatting.

/** An element: h("button", {type: "button", onclick: fn}, "Start"). Children are nodes or text. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name in element && typeof value !== "string") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let idCounter = 0;
/** A unique id for pairing a label (or a description) with its control. */
export function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled form field: the label, the control and an optional hint tied by aria-describedby. */
export function field(label, control, hint) {
  const id = control.id || uid("field");
  control.id = id;
  const parts = [h("label", { for: id }, label)];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts, control);
}

/**
 * Keeps one child of `container` per item, keyed by `key(item)`, rebuilding a child only when its item
 * changed, so a poll that changes nothing moves no focus and re-announces nothing. A rebuilt child
 * gets the focus back on its element with the same data-focus attribute.
 */
export function keyed(container, items, key, render) {
  const existing = new Map();
  for (const child of [...container.children]) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  }
  let previous = null;
  for (const item of items) {
    const id = String(key(item));
    const signature = JSON.stringify(item);
    let node = existing.get(id);
    existing.delete(id);
    if (!node || node.dataset.signature !== signature) {
      const focused = node && node.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
      const fresh = render(item);
      fresh.dataset.key = id;
      fresh.dataset.signature = signature;
      if (node) node.replaceWith(fresh);
      node = fresh;
      if (focused) node.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
    }
    const wanted = previous ? previous.nextSibling : container.firstChild;
    if (wanted !== node) container.insertBefore(node, wanted);
    previous = node;
  }
  for (const stale of existing.values()) stale.remove();
}

// --- messages ------------------------------------------------------------------------------------

const errorBox = () => document.getElementById("error");

/** Shows an error (the server's own message) in the alert region. */
export function showError(message) {
  const box = errorBox();
  document.getElementById("error-text").textContent = message;
  box.hidden = false;
  document.getElementById("notice").textContent = "";
}

export function clearError() {
  errorBox().hidden = true;
  document.getElementById("error-text").textContent = "";
}

/** Tells what happened, politely (screen readers read it when idle). */
export function announce(message) {
  clearError();
  const notice = document.getElementById("notice");
  notice.textContent = "";
  // A fresh text node after a tick, so the same message twice is announced twice.
  setTimeout(() => {
    notice.textContent = message;
  }, 50);
}

/** Runs an action from a button: busy while it runs, its error shown, the button enabled after. */
export async function act(button, action) {
  if (button) button.disabled = true;
  if (button) button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } catch (error) {
    showError(error.message || String(error));
    return undefined;
  } finally {
    if (button && button.isConnected) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}

// --- formatting ----------------------------------------------------------------------------------

export function bytes(count) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = Number(count) || 0;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** A Unix time (seconds) as the local date and time. */
export function when(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toLocaleString();
}

export function ago(seconds) {
  if (!seconds) return "never";
  const passed = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (passed < 60) return `${passed} s ago`;
  if (passed < 3600) return `${Math.round(passed / 60)} min ago`;
  if (passed < 86400) return `${Math.round(passed / 3600)} h ago`;
  return `${Math.round(passed / 86400)} days ago`;
}

/** A status as a labelled badge: the word itself is always shown, the color only adds to it. */
export function badge(status, prefix = "") {
  const word = status || "new";
  return h("span", { class: `badge status-${word}` }, prefix ? `${prefix} ${word}` : word);
}

/** A table in a scrollable, focusable region, so that a narrow screen can still reach every column. */
export function table(caption, headers, rows) {
  return h(
    "div",
    { class: "table-wrap", role: "region", "aria-label": caption, tabindex: "0" },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((header) => h("th", { scope: "col" }, header)))),
      h("tbody", {}, rows),
    ),
  );
}
