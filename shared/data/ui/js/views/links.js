// The pages the Workbench's e-mails link to: verifying an address, setting a new password.

import { api } from "../api.js";
import { act, announce, field, h, showError } from "../dom.js";

export function render(main, { name, query, navigate }) {
  if (name === "register") {
    const section = h("section", { class: "card narrow", "aria-labelledby": "verify-title" },
      h("h1", { id: "verify-title" }, "Verify your e-mail address"),
      h("p", {}, "Checking the link…"));
    main.append(section);
    api.verify(query.get("u") || "", query.get("t") || "").then(
      (reply) => {
        section.lastChild.textContent = reply.message;
        announce(reply.message);
      },
      (error) => {
        section.lastChild.textContent = "This link cannot be used.";
        showError(error.message);
      },
    );
    section.append(h("p", {}, h("a", { href: "#/login" }, "Go to the login")));
    return null;
  }
  const password = h("input", { type: "password", autocomplete: "new-password", required: true });
  const submit = h("button", { type: "submit" }, "Set the password");
  main.append(
    h("form", {
      class: "card narrow",
      "aria-labelledby": "recover-title",
      onsubmit: (event) => {
        event.preventDefault();
        act(submit, async () => {
          await api.changePassword(query.get("t") || "", password.value);
          navigate("login", "Your password is changed; log in with it.");
        });
      },
    },
    h("h1", { id: "recover-title" }, "Set a new password"),
    field("New password", password),
    h("div", { class: "actions" }, submit)),
  );
  return null;
}
