// Upload and run: many files, a config version (the latest by default), one job for all files
// or one per file. A full queue (429) is shown and retried after the server's Retry-After with
// a visible countdown; an upload refused (too large, bad request) shows the server's message.
import { ApiError, api, workspacePath } from "./api.js";
import { announce, errorBox, h, replace } from "./dom.js";

function newKey() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function size(bytes) {
  return bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function renderUpload(main) {
  let files = [];
  let stopped = false;
  let countdownTimer = null;
  let waitRelease = null;

  const fileInput = h("input", { id: "files", name: "files", type: "file", multiple: true,
                                 accept: ".xlsx,.xlsm,.csv", "aria-describedby": "files-help" });
  const chosen = h("ul", { id: "chosen-files", class: "plain" });
  const configSelect = h("select", { id: "config", name: "config", required: true });
  const perFile = h("input", { id: "per-file", name: "per-file", type: "checkbox" });
  const submit = h("button", { type: "submit", class: "primary" }, "Upload and run");
  const stop = h("button", { type: "button", hidden: true, onclick: () => {
    stopped = true;
    if (waitRelease) waitRelease();
  } }, "Stop retrying");
  const progress = h("div", { id: "upload-status", "aria-live": "polite" });
  const drop = h("div", { class: "dropzone", id: "dropzone" },
    h("label", { for: "files" }, "Spreadsheets (.xlsx, .xlsm, .csv)"),
    fileInput,
    h("p", { id: "files-help", class: "hint" }, "Choose one or many files, or drop them here."),
    chosen);

  const showChosen = () => replace(chosen, files.map((f) => h("li", {}, `${f.name} (${size(f.size)})`)));
  fileInput.addEventListener("change", () => {
    files = Array.from(fileInput.files || []);
    showChosen();
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    files = Array.from(event.dataTransfer.files || []);
    showChosen();
  });

  const form = h("form", { class: "card", id: "upload-form", onsubmit: (event) => {
    event.preventDefault();
    run();
  } },
    drop,
    h("div", { class: "field" },
      h("label", { for: "config" }, "Config version"),
      configSelect,
      h("p", { class: "hint" }, "The newest version is chosen; ", h("a", { href: "#/configs" }, "publish another"), ".")),
    h("div", { class: "field check" }, perFile, h("label", { for: "per-file" }, "One job per file (otherwise one job for all files)")),
    h("div", { class: "actions" }, submit, stop),
    progress);

  replace(main, h("h1", {}, "Upload and run"), form);

  api("GET", workspacePath("/configs")).then(({ items }) => {
    // The API lists oldest first: the newest is the default.
    const newest = [...items].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    replace(configSelect, newest.map((c, i) => h("option", { value: c.id, selected: i === 0 },
      `${c.title} ${c.version} — ${new Date(c.created_at).toLocaleString()} (${c.id.slice(0, 8)})`)));
    if (!items.length) {
      replace(progress, errorBox({ message: "No config version in this workspace yet: publish one on the Configs page." }));
      submit.disabled = true;
    }
  }).catch((error) => replace(progress, errorBox(error)));

  function line(text, cls = "") {
    const item = h("li", { class: cls }, text);
    progress.querySelector("ol").append(item);
    return item;
  }

  async function waitSeconds(seconds, refusal) {
    // A visible countdown, then the same request again (same Idempotency-Key: never twice).
    const box = h("div", { class: "notice", role: "status", id: "queue-full" },
      h("p", {}, h("strong", {}, "Queue full. "), refusal.message),
      h("p", {}, "Retrying in ", h("span", { id: "retry-countdown" }, String(seconds)), " s…"));
    progress.append(box);
    stop.hidden = false;
    announce(`Queue full, retrying in ${seconds} seconds`);
    await new Promise((resolve) => {
      let left = seconds;
      waitRelease = resolve;
      countdownTimer = setInterval(() => {
        left -= 1;
        const counter = box.querySelector("#retry-countdown");
        if (counter) counter.textContent = String(Math.max(left, 0));
        if (left <= 0) resolve();
      }, 1000);
    });
    clearInterval(countdownTimer);
    waitRelease = null;
    stop.hidden = true;
    box.remove();
  }

  async function submitJob(documentIds) {
    const key = newKey();
    const body = { config_version_id: configSelect.value, document_ids: documentIds };
    for (;;) {
      try {
        return await api("POST", workspacePath("/jobs"), { json: body, extraHeaders: { "Idempotency-Key": key } });
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 429 || stopped) throw error;
        await waitSeconds(Math.max(1, error.retryAfter || 5), error);
        if (stopped) throw new ApiError(429, "queue_full", "Stopped retrying; the files are uploaded and can be submitted again.");
      }
    }
  }

  async function run() {
    if (!files.length) {
      replace(progress, errorBox({ message: "Choose at least one spreadsheet first." }));
      fileInput.focus();
      return;
    }
    stopped = false;
    submit.disabled = true;
    replace(progress, h("ol", { class: "plain steps" }));
    const uploaded = [];
    try {
      for (const file of files) {
        const item = line(`Uploading ${file.name}…`);
        const form = new FormData();
        form.append("file", file, file.name);
        try {
          const document = await api("POST", workspacePath("/documents"), { form });
          replace(item, `Uploaded ${file.name}`);
          uploaded.push(document);
        } catch (error) {
          item.classList.add("failed");
          replace(item, `Not uploaded: ${file.name} — `, errorBox(error, { class: "error inline" }));
        }
      }
      if (!uploaded.length) return;
      const groups = perFile.checked ? uploaded.map((d) => [d]) : [uploaded];
      const jobs = [];
      for (const group of groups) {
        const names = group.map((d) => d.filename).join(", ");
        const item = line(`Submitting ${names}…`);
        try {
          const job = await submitJob(group.map((d) => d.id));
          jobs.push(job);
          replace(item, "Job ", h("a", { href: `#/jobs/${job.id}` }, job.id), ` accepted for ${names}`);
        } catch (error) {
          item.classList.add("failed");
          replace(item, `Not submitted: ${names} — `, errorBox(error, { class: "error inline" }));
        }
      }
      if (jobs.length === 1 && uploaded.length === files.length) {
        announce("Job accepted");
        window.location.hash = `#/jobs/${jobs[0].id}`;
      } else if (jobs.length) {
        announce(`${jobs.length} jobs accepted`);
        progress.append(h("p", {}, h("a", { href: "#/jobs" }, "See them in the jobs list")));
      }
    } finally {
      submit.disabled = false;
      stop.hidden = true;
    }
  }

  return () => {
    stopped = true;
    clearInterval(countdownTimer);
    if (waitRelease) waitRelease();
  };
}
