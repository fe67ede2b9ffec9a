// The page's shell: sign-in gate, workspace picker, navigation and a hash router
// (#/upload, #/jobs, #/jobs/<id>, #/jobs/<id>/decisions, #/configs, #/health).
import { ApiError, api, health, session, workspacePath } from "./api.js";
import { announce, errorBox, h, replace } from "./dom.js";
import { renderConfigs } from "./configs.js";
import { renderDecisions } from "./decisions.js";
import { renderHealth } from "./health.js";
import { renderJob } from "./job.js";
import { renderJobs } from "./jobs.js";
import { renderUpload } from "./upload.js";

const main = document.getElementById("main");
const state = { auth: "disabled", cleanup: null, routed: false };

const ROUTES = [
  [/^#\/upload$/, "upload", () => renderUpload],
  [/^#\/jobs\/([^/]+)\/decisions$/, "jobs", (m) => (el) => renderDecisions(el, decodeURIComponent(m[1]))],
  [/^#\/jobs\/([^/]+)$/, "jobs", (m) => (el) => renderJob(el, decodeURIComponent(m[1]))],
  [/^#\/jobs$/, "jobs", () => renderJobs],
  [/^#\/configs$/, "configs", () => renderConfigs],
  [/^#\/health$/, "health", () => renderHealth],
];

function needsKey() {
  return state.auth !== "disabled" && !session.key();
}

function route() {
  if (state.cleanup) {
    state.cleanup();
    state.cleanup = null;
  }
  document.getElementById("sign-out").hidden = state.auth === "disabled" || !session.key();
  if (needsKey()) {
    renderSignIn();
    return;
  }
  const hash = window.location.hash || "#/jobs";
  for (const [pattern, nav, view] of ROUTES) {
    const match = pattern.exec(hash);
    if (!match) continue;
    markNav(nav);
    const cleanup = view(match)(main);
    state.cleanup = typeof cleanup === "function" ? cleanup : null;
    focusMain();
    return;
  }
  markNav(null);
  replace(main, h("h1", {}, "Not found"), h("p", {}, "No page here. ", h("a", { href: "#/jobs" }, "Go to the jobs")));
}

function focusMain() {
  const heading = main.querySelector("h1");
  document.title = heading ? `${heading.textContent} — ADE` : "ADE";
  // Keyboard and screen-reader users start reading the new page, not the old link. Not on
  // the first load: there the first Tab must reach the skip link and the navigation.
  if (state.routed) main.focus({ preventScroll: true });
  state.routed = true;
}

function markNav(current) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function renderSignIn(problem) {
  markNav(null);
  const input = h("input", { id: "api-key", name: "api-key", type: "password", required: true,
                             autocomplete: "current-password", spellcheck: "false",
                             "aria-describedby": "api-key-help" });
  const status = h("div", { id: "sign-in-status" }, problem ? errorBox(problem) : null);
  const form = h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    replace(status, h("p", { class: "muted" }, "Checking the key…"));
    try {
      // Any read of the workspace proves the key; nothing is changed.
      await api("GET", workspacePath("/jobs"), { query: { limit: 1 }, key });
      session.setKey(key);
      announce("Signed in");
      fillWorkspaces();
      if (!window.location.hash || window.location.hash === "#/signin") window.location.hash = "#/jobs";
      route();
    } catch (error) {
      const words = error.status === 401 ? "That key was not accepted."
        : error.status === 403 ? `That key may not use workspace ${session.workspace()}.` : "";
      replace(status, errorBox(error instanceof ApiError ? error : { message: String(error) }),
              words ? h("p", {}, words) : null);
    }
  } },
    h("h1", {}, "Sign in"),
    h("p", {}, "This ADE asks for an API key. An operator makes one with the ",
      h("code", {}, "ade"), " command; the local admin key is in ", h("code", {}, "$ADE_DATA_DIR/admin.key"), "."),
    h("div", { class: "field" },
      h("label", { for: "api-key" }, "API key"),
      input,
      h("p", { id: "api-key-help", class: "hint" }, "Kept in this tab only (session storage) and sent to this server alone.")),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    status);
  replace(main, form);
  document.title = "Sign in — ADE";
  input.focus();
}

// The workspaces to offer: the server's list (the ones this key reaches) when it has one,
// else the ones used before in this browser; typing any other id works as well.
async function knownWorkspaces() {
  try {
    const { items } = await api("GET", "/api/v1/workspaces");
    return items.map((w) => ({ id: w.id, name: w.name || w.id }));
  } catch (error) {
    if (!(error instanceof ApiError) || ![404, 405].includes(error.status)) throw error;
    return [...new Set(["default", ...session.workspaces()])].map((id) => ({ id, name: id }));
  }
}

async function fillWorkspaces() {
  const input = document.getElementById("workspace");
  const list = document.getElementById("workspace-list");
  input.value = session.workspace();
  try {
    const known = await knownWorkspaces();
    replace(list, known.map((w) => h("option", { value: w.id }, w.name !== w.id ? w.name : null)));
  } catch {
    replace(list); // the list is a convenience: the picker still takes a typed id
  }
}

function setUpWorkspacePicker() {
  const form = document.getElementById("workspace-form");
  const input = document.getElementById("workspace");
  input.value = session.workspace();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const workspace = input.value.trim();
    if (!input.checkValidity()) {
      input.reportValidity();
      return;
    }
    session.setWorkspace(workspace);
    fillWorkspaces();
    announce(`Workspace ${workspace}`);
    if (/^#\/jobs\/./.test(window.location.hash)) window.location.hash = "#/jobs";
    else route();
  });
}

async function start() {
  setUpWorkspacePicker();
  document.getElementById("sign-out").addEventListener("click", () => {
    session.clearKey();
    announce("Signed out");
    route();
  });
  window.addEventListener("ade:unauthorized", () => {
    if (state.auth === "disabled") state.auth = "required";
    session.clearKey();
    renderSignIn({ status: 401, code: "unauthorized", message: "Sign in again: the key was refused." });
  });
  window.addEventListener("hashchange", route);
  try {
    const body = await health();
    state.auth = body.auth === undefined || body.auth === "disabled" ? "disabled" : "required";
  } catch (error) {
    replace(main, h("h1", {}, "ADE"), errorBox(error));
    return;
  }
  if (!needsKey()) fillWorkspaces();
  route();
}

start();
