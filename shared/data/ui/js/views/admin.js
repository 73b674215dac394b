// The admin's view: accounts awaiting approval, the shovels' health, dead-lettered events.

import { api, every } from "../api.js";
import { act, ago, announce, badge, bytes, h, showError, table, when } from "../dom.js";

const POLL_MILLISECONDS = 5000;

export function render(main) {
  const pending = h("div");
  const shovels = h("div");
  const letters = h("div");
  let signature = "";

  async function refresh() {
    const [accounts, shovelList, deadLetters] = await Promise.all([api.accounts(), api.shovels(), api.deadletters()]);
    const waiting = accounts.filter((account) => account.status === "unapproved");
    const next = JSON.stringify([waiting, shovelList, deadLetters]);
    if (next === signature) return;
    signature = next;
    const focused = document.activeElement?.dataset?.focus;
    pending.replaceChildren(pendingTable(waiting, refresh));
    shovels.replaceChildren(shovelTable(shovelList));
    letters.replaceChildren(letterTable(deadLetters));
    if (focused) main.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
  }

  main.append(
    h("h1", {}, "Administration"),
    h("section", { "aria-labelledby": "pending-title" }, h("h2", { id: "pending-title" }, "Accounts awaiting approval"), pending),
    h("section", { "aria-labelledby": "shovels-title" }, h("h2", { id: "shovels-title" }, "Shovels"), h("p", { class: "meta" }, "Each running stack's shovel reports a heartbeat; one not heard from for a while is marked stale."), shovels),
    h("section", { "aria-labelledby": "letters-title" }, h("h2", { id: "letters-title" }, "Dead-lettered events"), h("p", { class: "meta" }, "Events no function could take, newest first."), letters),
  );
  return every(POLL_MILLISECONDS, refresh, (error) => showError(error.message));
}

function pendingTable(accounts, refresh) {
  if (!accounts.length) return h("p", { class: "empty" }, "No account is waiting for approval.");
  const decide = (account, approve) => (event) =>
    act(event.currentTarget, async () => {
      const reply = await (approve ? api.approve(account) : api.deny(account));
      announce(`${account.id}: ${reply.message}`);
      await refresh();
    });
  return table(
    "Accounts awaiting approval",
    ["Account", "E-mail", "Organization", "Why", "Decision"],
    accounts.map((account) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, `${account.name} (${account.id})`),
        h("td", {}, account.email),
        h("td", {}, account.organization || "—"),
        h("td", {}, account.description || "—"),
        h(
          "td",
          {},
          h(
            "div",
            { class: "actions" },
            h("button", { type: "button", dataset: { focus: `approve-${account.id}` }, onclick: decide(account, true) }, "Approve", h("span", { class: "visually-hidden" }, ` ${account.id}`)),
            h("button", { type: "button", class: "danger", dataset: { focus: `deny-${account.id}` }, onclick: decide(account, false) }, "Deny", h("span", { class: "visually-hidden" }, ` ${account.id}`)),
          ),
        ),
      ),
    ),
  );
}

function shovelTable(shovels) {
  if (!shovels.length) return h("p", { class: "empty" }, "No shovel has reported yet: none of the stacks has run.");
  return table(
    "Shovels",
    ["User", "Stack", "Health", "Status", "Version", "Free space", "Last sync", "Last heartbeat"],
    shovels.map((shovel) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, shovel.user),
        h("td", {}, shovel.stackId),
        h("td", {}, badge(shovel.stale ? "stale" : "alive")),
        h("td", {}, shovel.status || "—"),
        h("td", {}, shovel.version || "—"),
        h("td", {}, bytes(shovel.freeBytes)),
        h("td", {}, shovel.lastSync || "—"),
        h("td", {}, h("time", { datetime: new Date(shovel.seenTime * 1000).toISOString(), title: when(shovel.seenTime) }, ago(shovel.seenTime))),
      ),
    ),
  );
}

function letterTable(letters) {
  if (!letters.length) return h("p", { class: "empty" }, "No dead-lettered events.");
  return table(
    "Dead-lettered events",
    ["Received", "Type", "Source", "Subject", "Failed at", "Answer"],
    letters.map((letter) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, when(letter.receivedTime)),
        h("td", {}, h("code", {}, letter.type)),
        h("td", {}, letter.source),
        h("td", {}, letter.subject || "—"),
        h("td", {}, letter.errorDestination || "—"),
        h("td", {}, [letter.errorCode, letter.errorData].filter(Boolean).join(": ") || "—"),
      ),
    ),
  );
}
