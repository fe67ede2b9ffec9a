// The jobs list: newest first, a status filter, cursor paging (thousands of jobs: the server
// pages, the page keeps only the cursors it walked), live updates from the workspace's event
// stream, and cancel / retry buttons.
import { api, eventStream, workspacePath } from "./api.js";
import { announce, errorBox, h, replace, statusBadge, when } from "./dom.js";

const PAGE_SIZE = 50;
const STATUSES = [["", "All"], ["queued", "Queued"], ["running", "Running"], ["success", "Succeeded"],
                  ["error", "Failed"], ["cancelled", "Cancelled"]];
const TERMINAL = new Set(["success", "error", "cancelled"]);
// An event's type -> the status it means for the job's row.
const STATUS_OF = { enqueue: "queued", start: "running", finish: null, error: "error", cancel: "cancelled" };

// Cancel for a queued or running job, Retry for a finished one. onChanged(job, what, error).
export function actionButtons(job, onChanged, size = "small") {
  const [label, action, what] = TERMINAL.has(job.status) ? ["Retry", "retry", "retried"]
    : ["Cancel", "cancel", "cancelled"];
  return [h("button", { type: "button", class: size, "aria-label": `${label} job ${job.id}`,
    onclick: async (event) => {
      event.currentTarget.disabled = true;
      try {
        onChanged(await api("POST", workspacePath(`/jobs/${job.id}/${action}`)), what);
      } catch (error) {
        onChanged(null, null, error);
      }
    } }, label)];
}

export function renderJobs(main) {
  const cursors = [null]; // cursors[i] opens page i
  let page = 0;
  let nextCursor = null;
  let rows = new Map(); // job id -> <tr>
  let refreshTimer = null;

  const filter = h("select", { id: "status-filter", name: "status" },
    STATUSES.map(([value, label]) => h("option", { value }, label)));
  const live = h("span", { id: "live-state", class: "muted" }, "connecting…");
  const message = h("div", { id: "jobs-message" });
  const body = h("tbody");
  const pageLabel = h("span", { id: "page-label" });
  const newer = h("button", { type: "button", onclick: () => go(page - 1) }, "← Newer");
  const older = h("button", { type: "button", onclick: () => go(page + 1) }, "Older →");
  const tableEl = h("table", { id: "jobs-table" },
    h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
    h("thead", {}, h("tr", {}, ["Job", "Status", "Attempt", "Created", "Finished", "What happened", "Actions"]
      .map((name) => h("th", { scope: "col" }, name)))),
    body);

  replace(main,
    h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" },
      h("div", { class: "field inline" }, h("label", { for: "status-filter" }, "Status"), filter),
      h("a", { href: "#/upload", class: "button primary" }, "Upload and run"),
      h("span", {}, "Updates: ", live)),
    message,
    h("div", { class: "scroll", role: "region", "aria-label": "Jobs", tabindex: "0" }, tableEl),
    h("nav", { class: "pager", "aria-label": "Pages of jobs" }, newer, pageLabel, older));

  filter.addEventListener("change", () => {
    cursors.length = 1;
    go(0);
  });

  function changed(job, what, error) {
    if (error) {
      replace(message, errorBox(error));
      return;
    }
    replace(message);
    announce(what === "retried" ? `Job retried as ${job.id}` : `Job ${job.id} ${what}`);
    scheduleRefresh(0);
  }

  function row(job) {
    const tr = h("tr", { "data-job": job.id, "data-status": job.status },
      h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "mono" }, job.id)),
      h("td", {}, statusBadge(job.status)),
      h("td", {}, String(job.attempt)),
      h("td", {}, when(job.created_at)),
      h("td", {}, when(job.finished_at)),
      h("td", { class: "message" }, job.error_message || ""),
      h("td", {}, actionButtons(job, changed)));
    return tr;
  }

  async function load() {
    const status = filter.value;
    try {
      const result = await api("GET", workspacePath("/jobs"), {
        query: { status, limit: PAGE_SIZE, cursor: cursors[page] },
      });
      nextCursor = result.next_cursor;
      rows = new Map(result.items.map((job) => [job.id, row(job)]));
      replace(body, rows.size ? [...rows.values()]
        : h("tr", {}, h("td", { colspan: 7, class: "empty" },
            status ? `No ${STATUSES.find(([v]) => v === status)[1].toLowerCase()} jobs in this workspace.`
                   : "No jobs in this workspace yet.")));
      newer.disabled = page === 0;
      older.disabled = !nextCursor;
      replace(pageLabel, `Page ${page + 1}${result.items.length ? `, ${result.items.length} job(s)` : ""}`);
    } catch (error) {
      replace(message, errorBox(error));
    }
  }

  function go(target) {
    if (target < 0) return;
    if (target > page) {
      if (!nextCursor) return;
      cursors[target] = nextCursor;
    }
    page = target;
    load();
  }

  function scheduleRefresh(delay = 400) {
    // Many events arrive in bursts: one reload per burst.
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      load();
    }, delay);
  }

  const stream = eventStream(workspacePath("/events"), {
    replay: false,
    onState: (state, delay) => replace(live, state === "live" ? "live"
      : state === "reconnecting" ? `reconnecting in ${Math.round(delay / 1000)} s…` : state),
    onEvent: (event) => {
      const tr = rows.get(event.job_id);
      if (tr) {
        const status = event.type === "finish" ? (event.detail && event.detail.status) || "success"
          : STATUS_OF[event.type];
        if (status && status !== tr.dataset.status) scheduleRefresh();
      } else if (event.type === "enqueue" && page === 0) {
        scheduleRefresh(); // a new job: it belongs at the top of the first page
      }
    },
  });

  load();
  return () => {
    stream.close();
    clearTimeout(refreshTimer);
  };
}
