// Send a Clowder dataset into my home, and export a folder of my home to a new Clowder dataset.

import { api, request } from "../api.js";
import { act, announce, bytes, clearError, field, h, plural, showError } from "../dom.js";
import { WAITING } from "./transfers.js";

/** A dataset id, or a Clowder dataset URL (…/datasets/<id>) that also names its Clowder. */
export function datasetAndClowder(text) {
  const trimmed = text.trim().replace(/\/+$/, "");
  const marker = trimmed.lastIndexOf("/datasets/");
  if (marker < 0) return { datasetId: trimmed };
  const datasetId = trimmed.slice(marker + "/datasets/".length).split(/[?#]/)[0];
  return { datasetId, clowderUrl: trimmed.slice(0, marker) };
}

const PATIENCE_MILLISECONDS = 1500;

function sentMessage(transfer) {
  const sending = `Sending ${transfer.datasetName || transfer.datasetId}: ${transfer.filesTotal} files to ${transfer.target || "your home"}.`;
  return transfer.waitingForStack ? `${sending} ${WAITING}` : sending;
}

function duration(seconds) {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** The lines of a transfer's plan (POST /api/transfers?dry_run=1): [term, description, fits?]. */
export function planLines(plan) {
  const lines = [
    ["Files", `${plural(plan.files, "file")}, ${bytes(plan.bytes)}`],
    ["Already staged", `${plural(plan.stagedFiles, "file")}, ${bytes(plan.stagedBytes)} (not fetched again)`],
    ["Already in the folder", `${plural(plan.inPlaceFiles, "file")}, ${bytes(plan.inPlaceBytes)} (same size)`],
    ["To fetch from Clowder", bytes(plan.fetchBytes)],
  ];
  if (plan.refusedFiles) lines.push(["Refused names", `${plural(plan.refusedFiles, "file")} would fail`, false]);
  if (plan.quotaBytes == null) lines.push(["Storage quota", "none"]);
  else {
    const room = `${bytes(plan.neededBytes)} needed; ${bytes(plan.usedBytes)} of ${bytes(plan.quotaBytes)} used`;
    lines.push(["Storage quota", `${plan.fitsQuota ? "fits" : "does not fit"}: ${room}`, plan.fitsQuota]);
  }
  if (plan.freeBytes == null) lines.push(["Free space", "unknown here"]);
  else lines.push(["Free space", `${plan.fitsFreeSpace ? "fits" : "does not fit"}: ${bytes(plan.freeBytes)} free`, plan.fitsFreeSpace]);
  lines.push(["Time", plan.estimateSeconds == null ? "no estimate yet" : `about ${duration(plan.estimateSeconds)}`]);
  return lines;
}

export function render(main, { navigate }) {
  const dataset = h("input", { name: "dataset", required: true, autocomplete: "off", spellcheck: "false" });
  const target = h("input", { name: "target", autocomplete: "off", spellcheck: "false", placeholder: "<dataset name>" });
  const checkButton = h("button", { type: "submit" }, "Check");
  const sendButton = h("button", { type: "button", hidden: true }, "Send to my home");
  const planBox = h("section", { class: "plan", "aria-labelledby": "send-plan-title", "aria-live": "polite", hidden: true });
  let checked = null; // the request the plan shown is for: Send sends exactly it

  const asked = () => {
    const body = datasetAndClowder(dataset.value);
    if (target.value.trim()) body.target = target.value.trim();
    return body;
  };
  const forget = () => {
    // A changed request needs a new check before it is sent.
    checked = null;
    planBox.hidden = true;
    planBox.replaceChildren();
    sendButton.hidden = true;
    checkButton.classList.remove("secondary");
  };
  dataset.addEventListener("input", forget);
  target.addEventListener("input", forget);

  const showPlan = (plan) => {
    const list = h("dl", {});
    for (const [term, text, fits] of planLines(plan)) {
      list.append(h("dt", {}, term), h("dd", { class: fits === false ? "over" : "" }, text));
    }
    const verdict = plan.fits
      ? h("p", { class: "verdict" }, "It fits: nothing has moved yet; Send starts it.")
      : h("p", { class: "verdict over" }, "It would not fit, so it cannot be sent.");
    const notes = (plan.notes || []).map((note) => h("p", { class: "hint" }, note));
    planBox.replaceChildren(
      h("h3", { id: "send-plan-title" }, `Plan: ${plan.datasetName || plan.datasetId} → ${plan.target}`),
      list,
      ...notes,
      verdict,
    );
    planBox.hidden = false;
    sendButton.hidden = !plan.fits;
    sendButton.disabled = !plan.fits;
    checkButton.classList.toggle("secondary", plan.fits);
  };

  sendButton.addEventListener("click", () => {
    const body = checked;
    if (!body) return;
    act(sendButton, async () => {
      // The answer comes once every file is staged: a large dataset is followed on the transfers
      // view meanwhile, where its files show as they arrive; a refusal comes at once, here.
      const sending = api.send(body).then((transfer) => ({ transfer }), (error) => ({ error }));
      const early = await Promise.race([sending, new Promise((resolve) => setTimeout(resolve, PATIENCE_MILLISECONDS))]);
      if (early?.error) throw early.error;
      if (early) {
        navigate("transfers", sentMessage(early.transfer));
        return;
      }
      navigate("transfers", "Staging the dataset from Clowder; its files show below as they arrive.");
      const { transfer, error } = await sending;
      if (error) showError(error.message);
      else announce(sentMessage(transfer));
    });
  });
  const sendForm = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "send-title",
      onsubmit: (event) => {
        event.preventDefault();
        const body = asked();
        act(checkButton, async () => {
          forget();
          clearError();
          const plan = await request("POST", "/api/transfers?dry_run=1", body);
          checked = body;
          showPlan(plan);
          if (plan.fits) sendButton.focus();
        });
      },
    },
    h("h2", { id: "send-title" }, "Send a Clowder dataset to my home"),
    field("Clowder dataset URL or id", dataset, "For example https://clowder.example.org/datasets/64f0…, or the id alone for the paired Clowder."),
    field("Folder in my data folder (optional)", target, "A folder inside your data folder (Clowder/ of your home), e.g. Soil samples; by default the dataset's name."),
    h("p", { class: "hint" }, "Check shows what would move, whether it fits your storage quota and the free space, and how long it may take; nothing moves until you Send."),
    planBox,
    h("div", { class: "actions" }, checkButton, sendButton),
  );

  const folder = h("input", { name: "folder", required: true, autocomplete: "off", spellcheck: "false" });
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const description = h("textarea", { name: "description", rows: "3" });
  const exportButton = h("button", { type: "submit" }, "Export to Clowder");
  const exportForm = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "export-title",
      onsubmit: (event) => {
        event.preventDefault();
        const body = { folder: folder.value.trim(), name: name.value.trim(), description: description.value.trim() };
        act(exportButton, async () => {
          const made = await api.exportFolder(body);
          navigate("transfers", `Exporting ${made.folder} to the new dataset ${made.name}.`);
        });
      },
    },
    h("h2", { id: "export-title" }, "Export a folder of my home to a new Clowder dataset"),
    field("Folder", folder, "As your app sees it, e.g. /home/jovyan/work/clowder/results, or relative to your data folder, e.g. results; every file below it is uploaded."),
    field("Name of the new dataset", name),
    field("Description (optional)", description),
    h("div", { class: "actions" }, exportButton),
  );

  main.append(
    h("h1", {}, "Send and export"),
    h(
      "p",
      { class: "lead" },
      "Data moves between Clowder and your data folder (Clowder/ of your home), which every app of yours sees at …/clowder inside its own folder (e.g. /home/jovyan/work/clowder; /data/clowder for an app without a folder). One of your stacks must be running to receive or export it; Transfers shows where each running app sees what arrived.",
    ),
    h("div", { class: "two-columns" }, sendForm, exportForm),
  );
  return null;
}
