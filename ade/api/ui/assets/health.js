// Health: the service's own report (GET /api/v1/health), refreshed every few seconds. Known
// sections get their own layout (queue, workers, store, sandbox layers); anything else the
// server reports (nodes, disk, auth, ... as the service grows) is rendered as it comes.
import { health } from "./api.js";
import { definitionList, errorBox, h, number, replace, table } from "./dom.js";

const REFRESH_MS = 5000;
const KNOWN = new Set(["status", "shutting_down", "runtime", "store", "sandbox"]);

function words(key) {
  return key.replaceAll("_", " ");
}

function value(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") return number(v);
  if (Array.isArray(v)) {
    if (v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      const columns = [...new Set(v.flatMap((x) => Object.keys(x)))];
      return table(null, columns.map(words), v.map((x) => columns.map((c) => value(x[c]))));
    }
    return v.map((x) => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", ") || "—";
  }
  if (typeof v === "object") return definitionList(Object.entries(v).map(([k, x]) => [words(k), value(x)]));
  return String(v);
}

function runtimeSections(runtime) {
  if (!runtime) return [];
  const totals = runtime.totals || {};
  return [
    h("section", { "aria-labelledby": "queue-heading", class: "card" },
      h("h2", { id: "queue-heading" }, "Queue"),
      definitionList([
        ["Waiting", `${number(runtime.queued)} of ${number(runtime.capacity)}`],
        ["Reserved (being admitted)", number(runtime.reserved)],
        ["Accepting new jobs", value(runtime.accepting)],
      ])),
    h("section", { "aria-labelledby": "workers-heading", class: "card" },
      h("h2", { id: "workers-heading" }, "Workers"),
      definitionList([
        ["Workers", number(runtime.workers)],
        ["Running jobs", number(runtime.running)],
        ["Idle workers", number(runtime.idle_workers)],
        ["Recent mean job time", runtime.recent_mean_duration_seconds == null ? "—"
          : `${runtime.recent_mean_duration_seconds.toFixed(2)} s`],
        ["Live event subscribers", number(runtime.subscribers)],
        ["Subscribers dropped (too slow)", number(runtime.dropped_subscribers)],
      ])),
    h("section", { "aria-labelledby": "totals-heading", class: "card" },
      h("h2", { id: "totals-heading" }, "Jobs by status"),
      definitionList(Object.entries(totals).map(([k, n]) => [words(k), number(n)]))),
    ...Object.entries(runtime).filter(([k]) => !["queued", "reserved", "running", "capacity", "workers",
      "idle_workers", "accepting", "totals", "recent_mean_duration_seconds", "subscribers", "dropped_subscribers"].includes(k))
      .map(([k, v]) => h("section", { class: "card" }, h("h2", {}, words(k)), value(v))),
  ];
}

function sandboxSection(sandbox) {
  if (!sandbox) return null;
  const layers = sandbox.layers || [];
  const rest = Object.entries(sandbox).filter(([k]) => !["layers", "mode", "notes", "probe_checks"].includes(k));
  return h("section", { "aria-labelledby": "sandbox-heading", class: "card wide" },
    h("h2", { id: "sandbox-heading" }, `Sandbox layers (mode ${sandbox.mode})`),
    table(null, ["Layer", "In force", "Why"], layers.map((l) => [l.name,
      h("span", { class: `badge ${l.available ? "status-success" : "status-error"}` }, l.available ? "yes" : "no"), l.reason || ""]),
    { id: "sandbox-layers" }),
    (sandbox.probe_checks || []).length ? table("Probe checks", ["Check", "Held"],
      sandbox.probe_checks.map(([check, passed]) => [check, passed ? "yes" : "FAILED"])) : null,
    (sandbox.notes || []).length ? h("ul", {}, sandbox.notes.map(([name, note]) => h("li", {}, `${name}: ${note}`))) : null,
    rest.length ? definitionList(rest.map(([k, v]) => [words(k), value(v)])) : null);
}

export function renderHealth(main) {
  const body = h("div", { id: "health", class: "grid" });
  const stamp = h("p", { class: "muted", id: "health-stamp" });
  let timer = null;

  async function load() {
    try {
      const report = await health();
      replace(body,
        h("section", { "aria-labelledby": "service-heading", class: "card" },
          h("h2", { id: "service-heading" }, "Service"),
          definitionList([
            ["Status", h("span", { class: `badge ${report.status === "ok" ? "status-success" : "status-error"}`, id: "health-status" }, report.status)],
            ["Shutting down", value(report.shutting_down)],
          ])),
        ...runtimeSections(report.runtime),
        report.store ? h("section", { "aria-labelledby": "store-heading", class: "card" },
          h("h2", { id: "store-heading" }, "Store"), value(report.store)) : null,
        ...Object.entries(report).filter(([k]) => !KNOWN.has(k)).map(([k, v]) =>
          h("section", { class: "card", "data-section": k }, h("h2", {}, words(k)), value(v))),
        sandboxSection(report.sandbox));
      replace(stamp, `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`);
    } catch (error) {
      replace(body, errorBox(error));
    }
  }

  replace(main, h("h1", {}, "Health"),
    h("div", { class: "toolbar" }, h("button", { type: "button", onclick: load }, "Refresh now"), stamp), body);
  load();
  timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}
