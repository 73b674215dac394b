// The catalog (the system's specs and the user's own): create a stack with its dependencies.

import { api } from "../api.js";
import { act, field, h, showError } from "../dom.js";

const LISTED = new Set(["stack", "standalone"]);

export function render(main, { navigate }) {
  const search = h("input", { type: "search", autocomplete: "off", placeholder: "e.g. jupyter, rstudio, database" });
  const count = h("p", { class: "meta", role: "status" }, "Loading the catalog…");
  const list = h("ul", { class: "catalog", id: "catalog-list", "aria-label": "Services you can create a stack of", "aria-busy": "true" });
  const creator = createDialog(navigate);
  let specs = [];

  function show() {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = specs
      .filter((spec) => LISTED.has(spec.display))
      .filter((spec) => {
        const text = [spec.key, spec.label, spec.description, ...(spec.tags || [])].join(" ").toLowerCase();
        return words.every((word) => text.includes(word));
      })
      .sort((a, b) => (a.catalog === b.catalog ? 0 : a.catalog === "user" ? -1 : 1) || (a.label || a.key).localeCompare(b.label || b.key));
    list.replaceChildren(...shown.map((spec) => item(spec)));
    count.textContent = `${shown.length} of ${specs.filter((spec) => LISTED.has(spec.display)).length} services shown.`;
  }

  function item(spec) {
    const byKey = new Map(specs.map((each) => [each.key, each]));
    const { required } = dependencies(spec, byKey);
    const titleId = `spec-${spec.key}-title`;
    return h(
      "li",
      { class: "card spec" },
      h(
        "div",
        { class: "spec-head" },
        h("h2", { id: titleId }, spec.label || spec.key),
        h("span", { class: `badge catalog-${spec.catalog}` }, spec.catalog === "user" ? "my spec" : "system"),
      ),
      h("p", { class: "meta" }, spec.key),
      h("p", { class: "description" }, spec.description || "No description."),
      required.length ? h("p", { class: "meta" }, `Comes with: ${required.join(", ")}`) : null,
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          { type: "button", "aria-describedby": titleId, onclick: () => creator.open(spec, byKey) },
          "Create a stack",
        ),
      ),
    );
  }

  search.addEventListener("input", show);
  main.append(
    h("h1", {}, "Catalog"),
    h(
      "p",
      { class: "lead" },
      "Pick a service to make a stack of it; the services it needs are added with it, and you may add the optional ones.",
    ),
    h("div", { class: "toolbar" }, field("Search the catalog", search), count),
    list,
    creator.element,
  );
  api.services().then(
    (reply) => {
      specs = reply || [];
      show();
      list.setAttribute("aria-busy", "false");
    },
    (error) => showError(error.message),
  );
  return null;
}

/** The services a stack of `spec` needs (the required ones, transitively) and those it may add. */
export function dependencies(spec, byKey) {
  const required = [];
  const optional = [];
  const visit = (current) => {
    for (const dependency of current.depends || []) {
      if (!dependency.required || required.includes(dependency.key) || dependency.key === spec.key) continue;
      required.push(dependency.key);
      const next = byKey.get(dependency.key);
      if (next) visit(next);
    }
  };
  visit(spec);
  for (const owner of [spec, ...required.map((key) => byKey.get(key)).filter(Boolean)]) {
    for (const dependency of owner.depends || []) {
      if (!dependency.required && !required.includes(dependency.key) && !optional.includes(dependency.key) && dependency.key !== spec.key) {
        optional.push(dependency.key);
      }
    }
  }
  return { required, optional };
}

function createDialog(navigate) {
  const title = h("h2", { id: "create-title" });
  const name = h("input", { name: "name", autocomplete: "off", required: true, maxlength: "64" });
  const body = h("div");
  const submit = h("button", { type: "submit" }, "Create");
  let current = null;
  const element = h(
    "dialog",
    { class: "create", "aria-labelledby": "create-title" },
    h(
      "form",
      {
        onsubmit: (event) => {
          event.preventDefault();
          const { spec, byKey, boxes } = current;
          const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
          const keys = [spec.key, ...dependencies(spec, byKey).required];
          for (const key of chosen) {
            keys.push(key, ...(byKey.get(key) ? dependencies(byKey.get(key), byKey).required : []));
          }
          const services = [...new Set(keys)].map((key) => ({ service: key }));
          act(submit, async () => {
            const stack = await api.createStack({ key: spec.key, name: name.value.trim(), services });
            element.close();
            navigate("stacks", `Created the stack ${stack.name} (${stack.id}); start it when you are ready.`);
          });
        },
      },
      title,
      field("Name of the stack", name),
      body,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => element.close() }, "Cancel"),
        submit,
      ),
    ),
  );
  return {
    element,
    open(spec, byKey) {
      const { required, optional } = dependencies(spec, byKey);
      title.textContent = `Create a stack of ${spec.label || spec.key}`;
      name.value = spec.label || spec.key;
      const label = (key) => `${byKey.get(key)?.label || key} (${key})`;
      const boxes = optional.map((key) => h("input", { type: "checkbox", value: key, id: `optional-${key}` }));
      const parts = [
        required.length
          ? h("div", { class: "field" }, h("p", { class: "label" }, "Required services, added with it"), h("ul", {}, required.map((key) => h("li", {}, label(key)))))
          : h("p", { class: "meta" }, "It needs no other service."),
        optional.length
          ? h(
              "fieldset",
              {},
              h("legend", {}, "Optional services"),
              boxes.map((box) => h("div", { class: "check" }, box, h("label", { for: box.id }, label(box.value)))),
            )
          : null,
      ];
      body.replaceChildren(...parts.filter(Boolean));
      current = { spec, byKey, boxes };
      element.showModal();
      name.select();
    },
  };
}
