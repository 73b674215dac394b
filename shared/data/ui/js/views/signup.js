// Signing up for an account: the fields POST /api/register takes, then what the registrant does next.

import { api } from "../api.js";
import { act, announce, field, h, showError } from "../dom.js";

/** The API names the field at fault first ("email: must be an e-mail address"); the form's control for it. */
const FIELDS = { namespace: "namespace", id: "namespace", name: "name", email: "email", password: "password" };

export function render(main) {
  const controls = {
    name: h("input", { name: "name", autocomplete: "name", required: true }),
    namespace: h("input", {
      name: "namespace",
      autocomplete: "username",
      required: true,
      autocapitalize: "none",
      spellcheck: "false",
    }),
    email: h("input", { name: "email", type: "email", autocomplete: "email", required: true, spellcheck: "false" }),
    password: h("input", { name: "password", type: "password", autocomplete: "new-password", required: true }),
    again: h("input", { name: "password-again", type: "password", autocomplete: "new-password", required: true }),
    organization: h("input", { name: "organization", autocomplete: "organization" }),
    description: h("textarea", { name: "description", rows: 3 }),
  };
  const submit = h("button", { type: "submit" }, "Sign up");

  // The fault is told twice: in the alert at the top, and beside the field, which gets the focus.
  function markInvalid(control, message) {
    const said = h("p", { class: "field-error", id: `${control.id}-error` }, message);
    control.after(said);
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", [control.getAttribute("aria-describedby"), said.id].filter(Boolean).join(" "));
    control.focus();
    showError(message);
  }

  function clearFaults() {
    for (const said of form.querySelectorAll(".field-error")) said.remove();
    for (const control of Object.values(controls)) {
      control.removeAttribute("aria-invalid");
      const described = (control.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.endsWith("-error"));
      if (described.length) control.setAttribute("aria-describedby", described.join(" "));
      else control.removeAttribute("aria-describedby");
    }
  }

  const form = h(
    "form",
    {
      class: "card narrow",
      "aria-labelledby": "signup-title",
      onsubmit: (event) => {
        event.preventDefault();
        clearFaults();
        if (controls.password.value !== controls.again.value) {
          markInvalid(controls.again, "The two passwords differ: type the same password twice.");
          return;
        }
        act(submit, async () => {
          const account = {
            namespace: controls.namespace.value.trim(),
            name: controls.name.value.trim(),
            email: controls.email.value.trim(),
            password: controls.password.value,
            organization: controls.organization.value.trim(),
            description: controls.description.value.trim(),
          };
          try {
            await api.register(account);
          } catch (error) {
            const named = FIELDS[String(error.message).split(":")[0]];
            if (error.status === 400 && named) markInvalid(controls[named], error.message);
            else if (error.status === 409 && /username/i.test(error.message))
              markInvalid(controls.namespace, `${error.message}: choose another user name.`);
            else if (error.status === 409 && /email/i.test(error.message))
              markInvalid(controls.email, `${error.message}. Log in, or ask for a new password if it is yours.`);
            else throw error;
            return;
          }
          controls.password.value = "";
          controls.again.value = "";
          main.replaceChildren(sent(account.email));
          main.querySelector("h1").focus();
          announce("Check your e-mail to verify your address.");
        });
      },
    },
    h("h1", { id: "signup-title" }, "Sign up for the Workbench"),
    h("p", {}, "Ask for an account: you verify your e-mail address with the link we send; where approval is required, an administrator then approves the account."),
    field("Full name", controls.name),
    field("User name", controls.namespace, "3 to 32 lowercase letters, digits or '-', starting with a letter; it names your account for good."),
    field("E-mail", controls.email, "We send a link to verify it; Clowder sends your datasets to the account with this address."),
    field("Password", controls.password, "At least 6 characters."),
    field("Password again", controls.again),
    field("Organization (optional)", controls.organization),
    field("What you will use the Workbench for (optional)", controls.description, "The administrator who approves your account reads this."),
    h("div", { class: "actions" }, submit, h("a", { href: "#/login" }, "I have an account: log in")),
  );
  main.append(form);
  controls.name.focus();
  return null;
}

function sent(email) {
  return h(
    "section",
    { class: "card narrow", "aria-labelledby": "sent-title" },
    h("h1", { id: "sent-title", tabindex: "-1" }, "Check your e-mail"),
    h("p", {}, "We sent a link to ", h("strong", {}, email), " to verify your address. Open it in this browser or any other."),
    h("p", {}, "The page the link opens says what comes next: usually that an administrator will approve your account, and that you get an e-mail once they have."),
    h("p", { class: "meta" }, "No mail within a few minutes? Look in the spam folder, or ask for the link again under ", h("a", { href: "#/forgot" }, "Forgot your password"), " with your user name."),
    h("p", {}, h("a", { href: "#/login" }, "Log in")),
  );
}
