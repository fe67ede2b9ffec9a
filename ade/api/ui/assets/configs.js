// Config packages: upload a .zip (validated and prepared by the server), its problems file by
// file when it is refused, and the workspace's versions.
import { ApiError, call, api, workspacePath } from "./api.js";
import { announce, errorBox, h, replace, table, when } from "./dom.js";

// "columns/email.py:detect_header" -> "columns/email.py"; "manifest.json" stays.
function fileOf(location) {
  const name = String(location || "(package)");
  const colon = name.indexOf(":");
  return colon > 0 ? name.slice(0, colon) : name;
}

export function problemsByFile(details) {
  const groups = new Map();
  for (const problem of details) {
    const file = fileOf(problem.location ?? problem.field);
    if (!groups.has(file)) groups.set(file, []);
    groups.get(file).push(problem);
  }
  return groups;
}

export function renderConfigs(main) {
  const input = h("input", { id: "package", name: "package", type: "file", accept: ".zip,application/zip",
                             required: true, "aria-describedby": "package-help" });
  const result = h("div", { id: "config-result", "aria-live": "polite" });
  const versions = h("div", { id: "config-versions" });
  const button = h("button", { type: "submit", class: "primary" }, "Upload and prepare");

  const form = h("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const file = input.files && input.files[0];
    if (!file) {
      replace(result, errorBox({ message: "Choose a .zip first." }));
      return;
    }
    button.disabled = true;
    replace(result, h("p", { class: "muted" }, `Uploading and preparing ${file.name}…`));
    const body = new FormData();
    body.append("package", file, file.name);
    try {
      const response = await call("POST", workspacePath("/configs"), { form: body });
      const config = await response.json();
      replace(result, h("p", { class: "success", role: "status" },
        response.status === 201 ? "Prepared " : "Already published (identical content): ",
        h("strong", {}, `${config.title} ${config.version}`), " — version ", h("code", {}, config.id)));
      announce(`Config ${config.title} ${config.version} ready`);
      load();
    } catch (error) {
      if (error instanceof ApiError && error.code === "invalid_config_package" && Array.isArray(error.details)) {
        const groups = problemsByFile(error.details);
        replace(result, h("div", { class: "error", role: "alert", id: "package-problems" },
          h("p", {}, h("strong", {}, `${file.name} was not published: `),
            `${error.details.length} problem(s) in ${groups.size} file(s).`),
          h("dl", { class: "problems" }, [...groups].map(([name, problems]) => [
            h("dt", {}, h("code", {}, name)),
            h("dd", {}, h("ul", {}, problems.map((p) => h("li", {},
              p.location && p.location !== name ? [h("code", {}, p.location), ": "] : null, p.message))))]))));
      } else {
        replace(result, errorBox(error));
      }
    } finally {
      button.disabled = false;
    }
  } },
    h("div", { class: "field" },
      h("label", { for: "package" }, "Config package (.zip)"),
      input,
      h("p", { id: "package-help", class: "hint" },
        "A zip of the package folder (manifest.json, row_types/, columns/, hooks/). It is checked and prepared before it can run.")),
    h("div", { class: "actions" }, button),
    result);

  async function load() {
    try {
      const { items } = await api("GET", workspacePath("/configs"));
      const newest = [...items].reverse();
      replace(versions, newest.length ? table(null, ["Title", "Version", "Version id", "Published", ""],
        newest.map((c) => [c.title, c.version, h("code", {}, c.id), when(c.created_at),
          h("a", { href: "#/upload" }, "Use it")]), { id: "configs-table" })
        : h("p", {}, "No config version in this workspace yet."));
    } catch (error) {
      replace(versions, errorBox(error));
    }
  }

  replace(main, h("h1", {}, "Configs"), form,
    h("section", { "aria-labelledby": "versions-heading" }, h("h2", { id: "versions-heading" }, "Versions (newest first)"), versions));
  load();
}
