// My transfers (Clowder → home) and exports (home → Clowder), with live progress and per-file errors.

import { api, every } from "../api.js";
import { act, announce, badge, bytes, h, keyed, plural, showError, when } from "../dom.js";

const POLL_MILLISECONDS = 2000;
const FINISHED = new Set(["completed", "failed"]);
const CAN_START = new Set(["stopped", "error"]);
const checks = new Map(); // transfer id → its last check (kept across the page's polls)
const WITHDRAWN_REASONS = { deleted: "deleted", "access-withdrawn": "access withdrawn" };
export const CHECK_WAITING =
  "Waiting for one of your stacks to start: its shovel checks the folder where your apps see it.";
export const WAITING = "None of your stacks is running: the files arrive when one of your stacks starts.";

export function render(main) {
  const transfers = h("div", { class: "transfer-list", id: "transfer-list", "aria-busy": "true" });
  const exports = h("div", { class: "transfer-list", id: "export-list", "aria-busy": "true" });
  const noTransfers = h("p", { class: "empty", hidden: true }, "No transfers yet. ", h("a", { href: "#/send" }, "Send a dataset"), ".");
  const noExports = h("p", { class: "empty", hidden: true }, "No exports yet. ", h("a", { href: "#/send" }, "Export a folder"), ".");
  const states = new Map();

  function tell(kind, item, label) {
    const key = `${kind}-${item.id}`;
    const before = states.get(key);
    if (before && before !== item.state && FINISHED.has(item.state)) announce(`${label} ${item.state}.`);
    states.set(key, item.state);
  }

  async function refresh() {
    const [transferList, exportList] = await Promise.all([api.transfers(), api.exports()]);
    // A transfer waiting for a stack offers to start one of the user's stacks (else to make one).
    const waiting = transferList.filter((item) => item.waitingForStack);
    if (waiting.length) {
      const stacks = await api.stacks();
      stacks.sort((a, b) => (a.createdTime || 0) - (b.createdTime || 0) || a.id.localeCompare(b.id));
      const stopped = stacks.find((stack) => CAN_START.has(stack.status));
      const offer = stopped ? { id: stopped.id, name: stopped.name || stopped.key } : null;
      for (const item of waiting) item.offer = offer;
    }
    const newestFirst = (a, b) => (b.createdTime || 0) - (a.createdTime || 0) || a.id.localeCompare(b.id);
    transferList.sort(newestFirst);
    exportList.sort(newestFirst);
    await followChecks(transferList);
    for (const item of transferList) if (checks.has(item.id)) item.check = checks.get(item.id);
    for (const item of transferList) tell("transfer", item, `The transfer of ${item.datasetName || item.datasetId}`);
    for (const item of exportList) tell("export", item, `The export of ${item.folder}`);
    noTransfers.hidden = transferList.length > 0;
    noExports.hidden = exportList.length > 0;
    keyed(transfers, transferList, (item) => item.id, (item) => transferCard(item, refresh));
    keyed(exports, exportList, (item) => item.id, exportCard);
    transfers.setAttribute("aria-busy", "false");
    exports.setAttribute("aria-busy", "false");
  }

  main.append(
    h("div", { class: "view-head" }, h("h1", {}, "Transfers and exports"), h("a", { class: "button", href: "#/send" }, "Send or export")),
    h("section", { "aria-labelledby": "transfers-title" }, h("h2", { id: "transfers-title" }, "Datasets sent to my home"), noTransfers, transfers),
    h("section", { "aria-labelledby": "exports-title" }, h("h2", { id: "exports-title" }, "Folders exported to Clowder"), noExports, exports),
  );
  return every(POLL_MILLISECONDS, refresh, (error) => showError(error.message));
}

function errorList(item) {
  const errors = item.errors || [];
  if (!errors.length && !item.message) return null;
  return h(
    "div",
    { class: item.state === "failed" || errors.length ? "problems" : "meta" },
    item.message ? h("p", {}, item.message) : null,
    errors.length
      ? h(
          "ul",
          { "aria-label": "Files that failed" },
          errors.map((error) => h("li", {}, h("code", {}, error.path), `: ${error.error}`)),
        )
      : null,
  );
}

function waitingNote(transfer, refresh) {
  if (!transfer.waitingForStack) return null;
  const offer = transfer.offer;
  const action = offer
    ? h(
        "button",
        {
          type: "button",
          dataset: { focus: `start-for-${transfer.id}` },
          onclick: (event) =>
            act(event.currentTarget, async () => {
              await api.start(offer.id);
              announce(`Starting ${offer.name} (${offer.id}); the files arrive once it runs.`);
              await refresh();
            }),
        },
        `Start ${offer.name}`,
      )
    : h("a", { class: "button", href: "#/catalog" }, "Create a stack from the catalog");
  return h("div", { class: "waiting" }, h("p", {}, WAITING), h("div", { class: "actions" }, action));
}

function transferCard(transfer, refresh) {
  const titleId = `transfer-${transfer.id}-title`;
  const progressId = `transfer-${transfer.id}-progress`;
  const total = transfer.bytesTotal || 0;
  const done = Math.min(transfer.bytesDone || 0, total);
  const complete = transfer.state === "completed";
  return h(
    "article",
    { class: "card transfer", "aria-labelledby": titleId },
    h(
      "header",
      { class: "stack-head" },
      h("h3", { id: titleId }, transfer.datasetName || transfer.datasetId),
      h("span", {}, h("span", { class: "visually-hidden" }, "State: "), badge(transfer.state)),
    ),
    h("p", { class: "meta" }, `to ${transfer.target || "my home"} · from ${transfer.source} · ${when(transfer.createdTime)}`),
    h("label", { for: progressId, class: "visually-hidden" }, `Progress of ${transfer.datasetName || transfer.datasetId}`),
    h("progress", {
      id: progressId,
      max: String(total || 1),
      value: String(total ? done : complete ? 1 : 0),
    }),
    h(
      "p",
      { class: "counts" },
      `${transfer.filesDone} of ${transfer.filesTotal} files · ${bytes(transfer.bytesDone)} of ${bytes(total)}`,
    ),
    withdrawnNote(transfer),
    seenIn(transfer),
    complete ? verifyBlock(transfer, refresh) : null,
    waitingNote(transfer, refresh),
    errorList(transfer),
  );
}

// Clowder deleted the dataset, or withdrew the user's access to it: the copy stays, the note tells.
function withdrawnNote(transfer) {
  const flag = transfer.withdrawn;
  if (!flag) return null;
  const said = flag.message ? `: ${flag.message}` : "";
  return h(
    "div",
    { class: "withdrawn", role: "note", "aria-label": "Withdrawn by Clowder" },
    h("p", {}, `Clowder withdrew this dataset (${WITHDRAWN_REASONS[flag.reason] || flag.reason}) on ${when(flag.time)}${said}`),
    h("p", {}, `Nothing was deleted: the copy in ${transfer.target || "your home"} stays yours.`),
  );
}

// The answer to Verify as a check: the result itself where the platform reaches the homes (200), else
// the check the user's shovel carries out (202), which the page's polls follow until it is settled.
function asCheck(reply) {
  return "state" in reply ? reply : { state: "completed", result: reply, counts: {} };
}

function tellCheck(name, check) {
  if (check.state === "requested") announce(`${name}: verifying against the receipt…`);
  else if (check.state === "failed") announce(`${name}: the check failed.`);
  else announce(check.result.unchanged ? `${name}: unchanged since received.` : `${name}: changed since received.`);
}

// Each requested check of a listed transfer read again; a settled one is told once.
async function followChecks(transferList) {
  const pending = transferList.filter((item) => checks.get(item.id)?.state === "requested");
  await Promise.all(
    pending.map(async (item) => {
      const check = await api.transferCheck(item.id);
      checks.set(item.id, check);
      if (check.state !== "requested") tellCheck(item.datasetName || item.datasetId, check);
    }),
  );
}

// A completed transfer's folder re-hashed against the receipt left next to its files.
function verifyBlock(transfer, refresh) {
  const check = transfer.check;
  const name = transfer.datasetName || transfer.datasetId;
  const button = h(
    "button",
    {
      type: "button",
      dataset: { focus: `verify-${transfer.id}` },
      onclick: (event) =>
        act(event.currentTarget, async () => {
          const started = asCheck(await api.verifyTransfer(transfer.id));
          checks.set(transfer.id, started);
          tellCheck(name, started);
          await refresh();
        }),
    },
    "Verify",
  );
  return h("div", { class: "verify" }, h("div", { class: "actions" }, button), ...checkLines(check));
}

function checkLines(check) {
  if (!check) return [];
  if (check.state === "requested") {
    const text = check.waitingForStack ? CHECK_WAITING : "Verifying against the receipt…";
    return [h("p", { class: "meta", role: "status" }, text)];
  }
  if (check.state === "failed") {
    return [h("p", { class: "problems", role: "status" }, `The check failed: ${check.message}`)];
  }
  const result = check.result;
  const counts = check.counts || {};
  const listed = (kind, label) => [
    ...result[kind].map((path) => h("li", {}, `${label}: `, h("code", {}, path))),
    ...(counts[kind] > result[kind].length ? [h("li", {}, `and ${counts[kind] - result[kind].length} more ${label}`)] : []),
  ];
  const changes = [
    ...listed("modified", "modified"),
    ...listed("missing", "missing"),
    ...listed("added", "added"),
    ...result.problems.map((problem) => h("li", {}, problem)),
  ];
  return [
    h(
      "p",
      { class: result.unchanged ? "meta" : "problems", role: "status" },
      result.unchanged
        ? `Unchanged since received: ${plural(result.checked, "file")} checked against the receipt.`
        : `Changed since received (${plural(result.checked, "file")} checked):`,
    ),
    changes.length ? h("ul", { "aria-label": "Changes since received" }, changes) : null,
  ];
}

// Where each running app sees the transfer's folder, in the app's own terms (worked out when read).
function seenIn(transfer) {
  const locations = transfer.locations || [];
  if (!locations.length) return null;
  return h(
    "ul",
    { class: "meta locations", "aria-label": "Where your running apps see the files" },
    locations.map((location) => h("li", {}, `In ${location.service}: `, h("code", {}, location.path))),
  );
}

function exportCard(item) {
  const titleId = `export-${item.id}-title`;
  return h(
    "article",
    { class: "card transfer", "aria-labelledby": titleId },
    h(
      "header",
      { class: "stack-head" },
      h("h3", { id: titleId }, `${item.folder} → ${item.name}`),
      h("span", {}, h("span", { class: "visually-hidden" }, "State: "), badge(item.state)),
    ),
    h("p", { class: "meta" }, `to ${item.source} · ${when(item.createdTime)}`),
    h(
      "p",
      { class: "counts" },
      `${plural(item.files, "file")} · ${bytes(item.bytes)}`,
      item.datasetId
        ? [" · dataset ", h("a", { href: `${item.source.replace(/\/+$/, "")}/datasets/${encodeURIComponent(item.datasetId)}`, target: "_blank", rel: "noopener noreferrer" }, item.datasetId)]
        : "",
    ),
    lineage(item),
    errorList(item),
  );
}

// The datasets the export's RO-Crate names as its sources (ro-crate-metadata.json in the new dataset).
function lineage(item) {
  const sources = item.derivedFrom || [];
  if (!sources.length) return "";
  return h(
    "p",
    { class: "meta lineage" },
    "Derived from ",
    sources.map((source, index) => [
      index ? ", " : "",
      h(
        "a",
        { href: `${source.source.replace(/\/+$/, "")}/datasets/${encodeURIComponent(source.datasetId)}`, target: "_blank", rel: "noopener noreferrer" },
        source.datasetName || source.datasetId,
      ),
      source.datasetVersion ? ` (version ${source.datasetVersion})` : "",
    ]),
    " · recorded in its ro-crate-metadata.json",
  );
}
