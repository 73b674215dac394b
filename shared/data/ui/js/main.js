// The management page: a hash router over the views, the session header and the message regions.

import { api, onSignedOut, session } from "./api.js";
import { announce, clearError, showError } from "./dom.js";
import * as admin from "./views/admin.js";
import * as catalog from "./views/catalog.js";
import * as forgot from "./views/forgot.js";
import * as links from "./views/links.js";
import * as login from "./views/login.js";
import * as send from "./views/send.js";
import * as signup from "./views/signup.js";
import * as stacks from "./views/stacks.js";
import * as transfers from "./views/transfers.js";

const VIEWS = {
  login: { module: login, title: "Log in", public: true },
  signup: { module: signup, title: "Sign up", public: true },
  forgot: { module: forgot, title: "Forgot your password", public: true },
  register: { module: links, title: "Verify your e-mail address", public: true },
  recover: { module: links, title: "Set a new password", public: true },
  stacks: { module: stacks, title: "My stacks" },
  catalog: { module: catalog, title: "Catalog" },
  transfers: { module: transfers, title: "Transfers and exports" },
  send: { module: send, title: "Send and export" },
  admin: { module: admin, title: "Administration", admin: true },
};

const main = document.getElementById("main");
let stopView = null;
let pending = { notice: "", error: "" };

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  return { name: name || "", rest, query: new URLSearchParams(query) };
}

/** Goes to a view, optionally telling what just happened (or went wrong) once it is shown. */
export function navigate(name, notice = "", error = "") {
  pending = { notice, error };
  const target = `#/${name}`;
  if (location.hash === target) route();
  else location.hash = target;
}

function showSession() {
  const signedIn = Boolean(session.token);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  document.getElementById("user-name").textContent = session.user;
  document.querySelector("[data-admin]").hidden = !session.admin;
}

function route() {
  const { name, rest, query } = parseHash();
  let view = VIEWS[name];
  if (!view) {
    location.replace(session.token ? "#/stacks" : "#/login");
    return;
  }
  if (!view.public && !session.token) {
    location.replace("#/login");
    return;
  }
  if (name === "login" && session.token) {
    location.replace("#/stacks");
    return;
  }
  if (view.admin && !session.admin) {
    location.replace("#/stacks");
    return;
  }
  stopView?.();
  stopView = null;
  showSession();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view.title} · Workbench`;
  main.replaceChildren();
  const { notice, error } = pending;
  pending = { notice: "", error: "" };
  clearError();
  document.getElementById("notice").textContent = "";
  stopView = view.module.render(main, { name, rest, query, navigate }) || null;
  if (error) showError(error);
  else if (notice) announce(notice);
  const heading = main.querySelector("h1");
  if (heading && !main.contains(document.activeElement)) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

onSignedOut((reason) => {
  navigate("login", "", `You are signed out: ${reason}. Log in again.`);
});

document.getElementById("logout").addEventListener("click", () => {
  // The token is forgotten at once (a reload or another view right after must not find it); the
  // server is told with the token in hand, and its answer is not waited for.
  const told = api.logout();
  session.clear();
  navigate("login", "You are logged out.");
  return told;
});

document.getElementById("error-close").addEventListener("click", () => {
  clearError();
  main.focus();
});

window.addEventListener("hashchange", route);
route();
