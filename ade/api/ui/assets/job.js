// One job: live pass-by-pass progress from its websocket, the events timeline, the ending in
// plain words, download of normalized.xlsx, cancel / retry, and the way to its decisions.
import { ApiError, api, download, eventStream, workspacePath } from "./api.js";
import { announce, definitionList, errorBox, h, number, replace, statusBadge, when } from "./dom.js";
import { actionButtons } from "./jobs.js";

export const PASSES = ["detect", "map", "transform", "validate", "write"];
const TERMINAL = new Set(["success", "error", "cancelled"]);
// Operators' material (a stderr tail that may quote data): never shown on the page.
const HIDDEN_DETAIL = new Set(["diagnostics"]);
const LIMITS = {
  timeout: "it ran past the time limit (ADE_JOB_TIMEOUT_SECONDS)",
  cpu: "it used up its CPU time (ADE_WORKER_CPU_SECONDS)",
  memory: "it ran out of memory (ADE_WORKER_MEM_MB)",
  fsize: "it tried to write a file larger than allowed (ADE_WORKER_FSIZE_MB)",
  restart: "the service restarted while it ran",
  shutdown: "the service shut down while it ran",
};

// The job's ending, in words a person reads once and understands.
export function ending(job) {
  switch (job.status) {
    case "queued":
      return "Waiting in the queue for a free worker.";
    case "running":
      return "Running now: the passes below fill in as they finish.";
    case "success": {
      // The outcome (ade/outcome.py): a finished run with error-level issues says so.
      const how = { errors: "Finished with errors", warnings: "Finished with warnings" }[job.outcome]
        || "Finished successfully";
      const counts = summaryWords(job.summary);
      return `${how}${counts ? `: ${counts}.` : ":"} `
        + `${counts ? "The" : "the"} normalized workbook is ready to download.`;
    }
    case "cancelled":
      return `Cancelled${job.error_message ? `: ${job.error_message}` : "."}`;
    case "error": {
      const why = job.limit && LIMITS[job.limit] ? ` — ${LIMITS[job.limit]}` : "";
      return `Failed: ${job.error_message || "the job did not finish"}${why}.`.replace(/\.\.$/, ".");
    }
    default:
      return job.status;
  }
}

// The engine's end-of-run summary (counts and names, never cell values) as one sentence.
export function summaryWords(summary) {
  if (!summary || typeof summary.rows_written !== "number") return "";
  const plural = (n, word) => `${number(n)} ${word}${n === 1 ? "" : "s"}`;
  const parts = [`${plural(summary.rows_written, "row")} written`];
  if (typeof summary.tables_found === "number") {
    parts[0] += ` from ${number(summary.tables_written ?? summary.tables_found)} of ${plural(summary.tables_found, "table")} found`;
  }
  if (typeof summary.issue_count === "number") {
    parts.push(summary.issue_count === 0 ? "no issues"
      : `${plural(summary.issue_count, "issue")} (${plural(summary.errors ?? 0, "error")}, ${plural(summary.warnings ?? 0, "warning")})`);
  }
  if (Array.isArray(summary.required_missing) && summary.required_missing.length) {
    parts.push(`required fields missing: ${summary.required_missing.join(", ")}`);
  }
  return parts.join("; ");
}

function detailText(detail) {
  if (!detail || typeof detail !== "object") return "";
  return Object.entries(detail)
    .filter(([key, value]) => !HIDDEN_DETAIL.has(key) && value !== null && typeof value !== "object")
    .map(([key, value]) => `${key.replaceAll("_", " ")}: ${typeof value === "number" ? number(value) : value}`)
    .join(" · ");
}

export function renderJob(main, jobId) {
  const jobPath = workspacePath(`/jobs/${encodeURIComponent(jobId)}`);
  const passState = new Map(PASSES.map((name) => [name, { state: "waiting", stats: "" }]));
  let job = null;
  let stream = null;
  const documentsEl = h("ul", { class: "plain", id: "job-documents" });
  let documentsShown = false;

  // The inputs by their file names (the document records: names and sizes, never contents).
  async function showDocuments() {
    if (documentsShown) return;
    documentsShown = true;
    const items = await Promise.all(job.document_ids.map((id) =>
      api("GET", workspacePath(`/documents/${encodeURIComponent(id)}`))
        .then((d) => `${d.filename} (${number(d.size)} bytes)`)
        .catch(() => `${id} (no longer stored)`)));
    replace(documentsEl, items.map((text) => h("li", {}, text)));
  }

  const heading = h("h1", {}, "Job ", h("span", { class: "mono" }, jobId));
  const badge = h("span", { id: "job-status" });
  const endingEl = h("p", { id: "job-ending", class: "ending", "aria-live": "polite" });
  const actions = h("div", { class: "actions", id: "job-actions" });
  const message = h("div", { id: "job-message" });
  const facts = h("div", { id: "job-facts" });
  const bar = h("progress", { id: "pass-progress", max: PASSES.length, value: 0, "aria-label": "Passes finished" });
  const passList = h("ol", { id: "passes", class: "passes" });
  const liveState = h("span", { id: "stream-state", class: "muted" });
  const timeline = h("ol", { id: "timeline", class: "timeline" });

  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "← Jobs")),
    heading,
    h("div", { class: "status-line" }, badge, endingEl),
    actions,
    message,
    h("section", { "aria-labelledby": "progress-heading" },
      h("h2", { id: "progress-heading" }, "Progress ", liveState),
      bar, passList),
    h("section", { "aria-labelledby": "facts-heading" }, h("h2", { id: "facts-heading" }, "Details"), facts),
    h("section", { "aria-labelledby": "timeline-heading" },
      h("h2", { id: "timeline-heading" }, "Events"), timeline));

  function drawPasses() {
    const done = [...passState.values()].filter((p) => p.state === "done").length;
    bar.value = done;
    bar.textContent = `${done} of ${PASSES.length}`;
    replace(passList, PASSES.map((name) => {
      const p = passState.get(name);
      const ended = job && TERMINAL.has(job.status);
      const words = { waiting: ended ? "not run" : "waiting", running: ended ? "stopped" : "running…",
                      done: "done" }[p.state];
      return h("li", { class: `pass pass-${p.state}`, "data-pass": name },
        h("span", { class: "pass-name" }, name), " ", h("span", { class: "pass-state" }, words),
        p.stats ? h("span", { class: "pass-stats muted" }, ` — ${p.stats}`) : null);
    }));
  }

  function drawJob() {
    replace(badge, statusBadge(job.status));
    drawPasses();
    replace(endingEl, ending(job));
    const buttons = actionButtons(job, (changed, what, error) => {
      if (error) {
        replace(message, errorBox(error));
        return;
      }
      if (what === "retried") {
        announce(`Retried as job ${changed.id}`);
        window.location.hash = `#/jobs/${changed.id}`;
      } else {
        refresh();
      }
    }, "");
    if (job.status === "success") {
      buttons.unshift(h("button", { type: "button", class: "primary", id: "download", onclick: async () => {
        try {
          const name = await download(`${jobPath}/output`, `${job.id}.normalized.xlsx`);
          announce(`Downloaded ${name}`);
        } catch (error) {
          replace(message, errorBox(error));
        }
      } }, "Download normalized.xlsx"));
    }
    if (TERMINAL.has(job.status)) {
      buttons.push(h("a", { class: "button", href: `#/jobs/${job.id}/decisions`, id: "decisions-link" }, "Decisions"));
    }
    replace(actions, buttons);
    replace(facts, definitionList([
      ["Status", job.status],
      ["Attempt", String(job.attempt)],
      ["Retry of", job.retry_of ? h("a", { href: `#/jobs/${job.retry_of}`, class: "mono" }, job.retry_of) : "—"],
      ["Config version", h("span", { class: "mono" }, job.config_version_id)],
      ["Inputs", documentsEl],
      ["Created", when(job.created_at)],
      ["Started", when(job.started_at)],
      ["Finished", when(job.finished_at)],
      ["Exit", job.exit_code === null && job.exit_signal === null ? "—"
        : `code ${job.exit_code ?? "—"}, signal ${job.exit_signal ?? "—"}`],
      ["Limit reached", job.limit || "—"],
      ["Sandbox layers", job.sandbox_layers.length ? job.sandbox_layers.join(", ") : "—"],
      ["Network during the run", job.runtime_network_access ? "allowed" : "blocked"],
      ...Object.entries(job.summary || {}).map(([key, value]) => [
        `Summary: ${key.replaceAll("_", " ")}`,
        Array.isArray(value) ? value.join(", ") || "none" : typeof value === "object" && value !== null
          ? JSON.stringify(value) : typeof value === "number" ? number(value) : String(value)]),
    ]));
  }

  async function refresh() {
    try {
      job = await api("GET", jobPath);
      drawJob();
      showDocuments();
      if (job.status === "success") {
        for (const p of passState.values()) if (p.state !== "done") p.state = "done";
        drawPasses();
      }
    } catch (error) {
      replace(message, errorBox(error));
      if (error instanceof ApiError && error.status === 404 && stream) stream.close();
    }
  }

  function onEvent(event) {
    const detail = event.detail || {};
    if (event.type === "pass_started" && passState.has(detail.pass)) {
      passState.get(detail.pass).state = "running";
    } else if (event.type === "pass_progress" && passState.has(detail.pass)) {
      passState.get(detail.pass).stats = `${number(detail.rows)} rows so far`;
    } else if (event.type === "pass_finished" && passState.has(detail.pass)) {
      const p = passState.get(detail.pass);
      p.state = "done";
      const { pass, ...stats } = detail;
      p.stats = detailText(stats);
      announce(`${pass} pass finished`);
    }
    drawPasses();
    timeline.append(h("li", { "data-type": event.type },
      h("span", { class: "seq muted" }, `#${event.seq}`), " ", when(event.ts), " ",
      h("strong", {}, event.type.replaceAll("_", " ")),
      detailText(detail) ? h("span", { class: "detail" }, ` — ${detailText(detail)}`) : null));
    if (["start", "finish", "error", "cancel"].includes(event.type)) refresh();
  }

  drawPasses();
  refresh().then(() => {
    if (!job) return; // unknown job: the message says so, there is nothing to follow
    stream = eventStream(`${jobPath}/events`, {
      onEvent,
      onState: (state, delay) => replace(liveState, state === "live" ? "(live)"
        : state === "reconnecting" ? `(reconnecting in ${Math.round(delay / 1000)} s…)` : ""),
    });
  });
  return () => stream && stream.close();
}
