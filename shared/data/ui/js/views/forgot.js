// Asking for a password reset e-mail. The answer never depends on whether the account exists: the API
// answers alike for every name, and so does this page (the same words, whatever the reply says).

import { api } from "../api.js";
import { act, announce, field, h } from "../dom.js";

export function render(main) {
  const userId = h("input", { name: "userId", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const submit = h("button", { type: "submit" }, "Send the link");
  const form = h(
    "form",
    {
      class: "card narrow",
      "aria-labelledby": "forgot-title",
      onsubmit: (event) => {
        event.preventDefault();
        act(submit, async () => {
          await api.requestReset(userId.value.trim());
          main.replaceChildren(asked());
          main.querySelector("h1").focus();
          announce("If the account exists, a link to set a new password is on its way.");
        });
      },
    },
    h("h1", { id: "forgot-title" }, "Forgot your password?"),
    h("p", {}, "We e-mail a link to set a new password to the address of the account."),
    field("User name or e-mail", userId),
    h("div", { class: "actions" }, submit, h("a", { href: "#/login" }, "Back to the login")),
  );
  main.append(form);
  userId.focus();
  return null;
}

function asked() {
  return h(
    "section",
    { class: "card narrow", "aria-labelledby": "asked-title" },
    h("h1", { id: "asked-title", tabindex: "-1" }, "Check your e-mail"),
    h("p", {}, "If an account has that user name or e-mail, we sent a link to set a new password to its address. The link works once, within 30 minutes."),
    h("p", {}, "An account whose address is not verified yet gets its verification link again instead."),
    h("p", { class: "meta" }, "Only one mail goes out in a while: ask again later if none arrives."),
    h("p", {}, h("a", { href: "#/login" }, "Log in")),
  );
}
