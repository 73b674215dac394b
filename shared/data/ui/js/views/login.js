// The login form: a Workbench account's user name (or e-mail) and password.

import { api, session } from "../api.js";
import { act, field, h } from "../dom.js";

export function render(main, { navigate }) {
  const username = h("input", { name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    {
      class: "card narrow",
      "aria-labelledby": "login-title",
      onsubmit: (event) => {
        event.preventDefault();
        act(submit, async () => {
          const reply = await api.login(username.value.trim(), password.value);
          session.save(reply.token);
          password.value = "";
          navigate("stacks", `Welcome, ${session.user}.`);
        }).then(() => {
          if (!session.token) password.select();
        });
      },
    },
    h("h1", { id: "login-title" }, "Log in to the Workbench"),
    h("p", {}, "Launch research tools in your own stacks and bring in your Clowder datasets."),
    field("User name or e-mail", username),
    field("Password", password),
    h("div", { class: "actions" }, submit, h("a", { href: "#/forgot" }, "Forgot your password?")),
    h("p", { class: "meta" }, "No account yet? ", h("a", { href: "#/signup" }, "Sign up")),
  );
  main.append(form);
  username.focus();
}
