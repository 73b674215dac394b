// Send a Clowder dataset into my home, and export a folder of my home to a new Clowder dataset.

import { api } from "../api.js";
import { act, announce, field, h, showError } from "../dom.js";
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

export function render(main, { navigate }) {
  const dataset = h("input", { name: "dataset", required: true, autocomplete: "off", spellcheck: "false" });
  const target = h("input", { name: "target", autocomplete: "off", spellcheck: "false", placeholder: "<dataset name>" });
  const sendButton = h("button", { type: "submit" }, "Send to my home");
  const sendForm = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "send-title",
      onsubmit: (event) => {
        event.preventDefault();
        const body = datasetAndClowder(dataset.value);
        if (target.value.trim()) body.target = target.value.trim();
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
      },
    },
    h("h2", { id: "send-title" }, "Send a Clowder dataset to my home"),
    field("Clowder dataset URL or id", dataset, "For example https://clowder.example.org/datasets/64f0…, or the id alone for the paired Clowder."),
    field("Folder in my data folder (optional)", target, "A folder inside your data folder (Clowder/ of your home), e.g. Soil samples; by default the dataset's name."),
    h("div", { class: "actions" }, sendButton),
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
