// The pages the Workbench's e-mails link to: verifying an address (#/register/verify?t=…&u=…) and
// setting a new password (#/recover?t=…). The token is in the address's fragment, which the browser
// never sends to a server; it leaves the address bar (and the tab's history) once it is spent.

import { ApiError, api, claimsOf, session } from "../api.js";
import { act, announce, field, h, showError } from "../dom.js";

const OUTCOME_KEY = "workbench.verify-outcome";
const SPENT_KEY = "workbench.spent-links";
const SPENT_KEPT = 20;

/** What the verification API's answers mean for the registrant. */
const VERIFIED = {
  "Account has been verified.": {
    title: "Your e-mail address is verified",
    text: "An administrator will approve your account; you get an e-mail once they have. Then log in.",
  },
  "Account has been verified and approved.": {
    title: "Your account is ready",
    text: "Your e-mail address is verified and the account is approved: log in.",
  },
  "E-mail address has been changed.": {
    title: "Your new e-mail address is confirmed",
    text: "The account uses it from now on; the old address was told.",
  },
};
const USED = {
  title: "This link was already used",
  text: "It worked when it was first opened in this browser; it works only once.",
};
const INVALID = {
  title: "This link is not valid",
  text: "It may be cut short (copy the whole address from the e-mail), replaced by a newer link, or already used. An account waiting for its address to be verified gets a new link under Forgot your password.",
};

export function render(main, { name, query }) {
  if (name === "register") return verify(main, query);
  return recover(main, query);
}

// --- #/register/verify ---------------------------------------------------------------------------

function verify(main, query) {
  const [user, token] = [query.get("u") || "", query.get("t") || ""];
  const section = h(
    "section",
    { class: "card narrow", "aria-labelledby": "verify-title" },
    h("h1", { id: "verify-title" }, "Verifying your e-mail address"),
    h("p", {}, "Checking the link…"),
  );
  main.append(section);
  const show = (outcome, remembered = true) => {
    section.replaceChildren(
      h("h1", { id: "verify-title", tabindex: "-1" }, outcome.title),
      h("p", {}, outcome.text),
      h("p", {}, h("a", { href: "#/login", class: "button" }, "Log in")),
    );
    if (remembered) sessionStorage.setItem(OUTCOME_KEY, JSON.stringify(outcome));
    // The token leaves the address: a reload shows this outcome again rather than spending nothing.
    history.replaceState(null, "", "#/register/verify");
    section.querySelector("h1").focus({ preventScroll: true });
    announce(outcome.title);
  };

  if (!user || !token) {
    const shown = readJson(sessionStorage, OUTCOME_KEY);
    show(shown && shown.title ? shown : INVALID, false);
    return null;
  }
  const attempt = () =>
    api.verify(user, token).then(
      (reply) => {
        remember(token);
        show(VERIFIED[reply?.message] || { title: "Done", text: String(reply?.message || "") });
      },
      (error) => {
        if (error instanceof ApiError && (error.status === 404 || error.status === 400)) {
          show(spent(token) ? USED : INVALID);
          return;
        }
        // Not an answer about the link (the API unreachable, throttled, failing): it can be tried again.
        const again = h("button", { type: "button" }, "Try again");
        again.addEventListener("click", () => act(again, attempt));
        section.replaceChildren(
          h("h1", { id: "verify-title" }, "The link could not be checked"),
          h("p", {}, "Nothing was changed; try again in a moment."),
          h("div", { class: "actions" }, again),
        );
        showError(error.message);
      },
    );
  attempt();
  return null;
}

function readJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) || "null");
  } catch {
    return null;
  }
}

// A spent link's token opens nothing (every status change makes a new one), so keeping it in this
// browser only lets a second visit say "already used" rather than "not valid".
function remember(token) {
  const tokens = (readJson(localStorage, SPENT_KEY) || []).filter((kept) => kept !== token);
  tokens.push(token);
  localStorage.setItem(SPENT_KEY, JSON.stringify(tokens.slice(-SPENT_KEPT)));
}

function spent(token) {
  const tokens = readJson(localStorage, SPENT_KEY);
  return Array.isArray(tokens) && tokens.includes(token);
}

// --- #/recover -----------------------------------------------------------------------------------

function recover(main, query) {
  const token = query.get("t") || "";
  const expires = claimsOf(token)?.exp;
  if (!token || typeof expires !== "number") {
    main.append(refused("This link is not valid", "It may be cut short: copy the whole address from the e-mail, or ask for a new link."));
    return null;
  }
  if (expires * 1000 <= Date.now()) {
    main.append(refused("This link has expired", "A link to set a new password works for 30 minutes: ask for a new one."));
    return null;
  }
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true });
  const again = h("input", { name: "password-again", type: "password", autocomplete: "new-password", required: true });
  const submit = h("button", { type: "submit" }, "Set the password");
  const form = h(
    "form",
    {
      class: "card narrow",
      "aria-labelledby": "recover-title",
      onsubmit: (event) => {
        event.preventDefault();
        again.removeAttribute("aria-invalid");
        if (password.value !== again.value) {
          again.setAttribute("aria-invalid", "true");
          again.focus();
          showError("The two passwords differ: type the same password twice.");
          return;
        }
        act(submit, async () => {
          try {
            await api.changePassword(token, password.value);
          } catch (error) {
            if (error.status === 401) {
              main.replaceChildren(refused("This link cannot be used any more", `${error.message}.`));
              history.replaceState(null, "", "#/recover");
              main.querySelector("h1").focus();
            }
            throw error;
          }
          password.value = "";
          again.value = "";
          // Every session of the account ended with the change, this tab's too.
          session.clear();
          history.replaceState(null, "", "#/recover");
          main.replaceChildren(
            h(
              "section",
              { class: "card narrow", "aria-labelledby": "recovered-title" },
              h("h1", { id: "recovered-title", tabindex: "-1" }, "Your new password is set"),
              h("p", {}, "Every session of the account has ended: log in with the new password."),
              h("p", {}, h("a", { href: "#/login", class: "button" }, "Log in")),
            ),
          );
          main.querySelector("h1").focus();
          announce("Your new password is set.");
        });
      },
    },
    h("h1", { id: "recover-title" }, "Set a new password"),
    h("p", {}, `For the account ${claimsOf(token)?.user || ""}.`),
    field("New password", password, "At least 6 characters."),
    field("New password again", again),
    h("div", { class: "actions" }, submit),
  );
  main.append(form);
  password.focus();
  return null;
}

function refused(title, text) {
  return h(
    "section",
    { class: "card narrow", "aria-labelledby": "refused-title" },
    h("h1", { id: "refused-title", tabindex: "-1" }, title),
    h("p", {}, text),
    h("p", { class: "actions" }, h("a", { href: "#/forgot", class: "button" }, "Ask for a new link"), h("a", { href: "#/login" }, "Log in")),
  );
}
