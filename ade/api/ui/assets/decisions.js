// The decisions of one job, from its artifact.json, for people: the tables found, where each
// source column went (score, the rules that voted, why an unmapped column stayed unmapped),
// the row accounting and the issues by row and field. The artifact holds no cell values and
// this page reads nothing else: it never opens the inputs.
import { ApiError, api, workspacePath } from "./api.js";
import { definitionList, errorBox, h, number, replace, table, when } from "./dom.js";

const OUTCOMES = {
  tables_found: "tables found",
  unrecognised_tables_only: "only tables whose headers the config does not recognise",
  no_header_row: "no header row (no row looked like column headings)",
  no_table: "headers but no data under them",
  empty: "empty",
};

function score(value) {
  return typeof value === "number" ? value.toLocaleString(undefined, { maximumFractionDigits: 3 }) : "—";
}

function rules(column) {
  if (!column.rules.length) return "no rule voted";
  return h("ul", { class: "plain votes" }, column.rules.map((r) =>
    h("li", {}, h("code", {}, r.rule), ` → ${r.field} `, h("span", { class: r.delta >= 0 ? "plus" : "minus" },
      `${r.delta >= 0 ? "+" : ""}${score(r.delta)}`))));
}

function tablesSection(artifact) {
  return h("section", { "aria-labelledby": "tables-heading" },
    h("h2", { id: "tables-heading" }, `Tables found (${artifact.tables.length})`),
    artifact.tables.length ? table(null,
      ["Table", "Input", "Sheet", "Range", "Header row", "Data rows", "Ended by", "Outcome"],
      artifact.tables.map((t) => [t.id + (t.continues ? ` (continues ${t.continues})` : "")
        + (t.recognised ? "" : " (unrecognised)"), t.input, t.sheet, t.range, String(t.header_row),
        `${number(t.data_rows)} (rows ${t.first_data_row}–${t.last_data_row})`, t.ended_by.replaceAll("_", " "),
        t.status === "written" ? `written to output rows ${t.output_first_row}–${t.output_last_row}`
          : `skipped: ${t.skip_reason || "no reason given"}`]),
      { id: "tables" }) : h("p", {}, "No table was found in the inputs."));
}

function columnsSection(artifact) {
  return artifact.tables.map((t) => h("section", { "aria-labelledby": `columns-${t.id}`, class: "columns" },
    h("h3", { id: `columns-${t.id}` }, `Columns of ${t.id} — ${t.sheet} ${t.range}`),
    t.required_missing.length ? h("p", { class: "warning" }, `Required fields not found: ${t.required_missing.join(", ")}`) : null,
    table(null, ["Source column", "Header", "Went to", "Score", "Rules that voted", "Why"],
      t.columns.map((c) => [c.letter, c.header ?? "(blank)",
        c.field ? h("strong", {}, c.field) : h("em", {}, "unmapped"),
        score(c.score), rules(c),
        c.status === "mapped" ? (c.output_header ? `written as “${c.output_header}”` : "mapped")
          : `${c.unmapped_reason || "unmapped"}${c.output_header ? `; kept as “${c.output_header}”` : ""}`]),
      { class: "mapping", "data-table": t.id })));
}

// Where each non-blank row ended up (artifact.json's per-sheet accounting adds up to rows read).
const PLACES = ["table_header", "table_group_header", "table_data", "unrecognised_table_header",
  "unrecognised_table_data", "header_without_data", "outside_table"];

function accountingSection(artifact) {
  const kinds = new Set();
  for (const input of artifact.inputs) for (const sheet of input.sheets) {
    for (const kind of Object.keys(sheet.accounting)) kinds.add(kind);
  }
  const order = [...PLACES.filter((k) => kinds.has(k)), ...[...kinds].filter((k) => !PLACES.includes(k)).sort()];
  const rows = [];
  for (const input of artifact.inputs) {
    for (const sheet of input.sheets) {
      rows.push([input.name, sheet.name, OUTCOMES[sheet.outcome] || sheet.outcome, number(sheet.rows_read),
        ...order.map((k) => number(sheet.accounting[k] ?? 0)), number(sheet.blank_rows),
        sheet.tables.join(", ") || "—"]);
    }
  }
  const s = artifact.summary;
  return h("section", { "aria-labelledby": "accounting-heading" },
    h("h2", { id: "accounting-heading" }, "Row accounting"),
    h("p", {}, "Every non-blank row read is in exactly one place: a table's header or data, or a named other kind; ",
      `${number(s.rows_outside_tables)} data row(s) were outside any table; `,
      `${number(artifact.output.rows_written)} data row(s) were written to ${artifact.output.path} (sheet “${artifact.output.sheet}”).`),
    table(null, ["Input", "Sheet", "Outcome", "Rows read", ...order.map((k) => k.replaceAll("_", " ")), "Blank rows",
      "Tables"], rows, { id: "accounting" }),
    artifact.required_missing.length ? h("p", { class: "warning" },
      `Required fields missing from a written table: ${artifact.required_missing.join(", ")}`) : null);
}

function issuesSection(artifact) {
  const v = artifact.validation;
  const issues = artifact.issues;
  const fieldSelect = h("select", { id: "issue-field" }, h("option", { value: "" }, "All fields"),
    [...new Set(issues.map((i) => i.field).filter((f) => f))].sort().map((f) => h("option", { value: f }, f)));
  const severitySelect = h("select", { id: "issue-severity" },
    [["", "Errors and warnings"], ["error", "Errors"], ["warning", "Warnings"]].map(([value, label]) => h("option", { value }, label)));
  const holder = h("div", { id: "issues-holder" });
  const draw = () => {
    const shown = issues.filter((i) => (!fieldSelect.value || i.field === fieldSelect.value)
      && (!severitySelect.value || i.severity === severitySelect.value));
    const shownOrDash = (value) => (value === null ? "—" : String(value));
    replace(holder, shown.length ? table(null, ["Severity", "Pass", "Input", "Sheet", "Row", "Cell", "Field", "Code", "Message", "Output row"],
      shown.map((i) => [h("span", { class: `badge sev-${i.severity}` }, i.severity), i.pass_name, i.input,
        shownOrDash(i.sheet), shownOrDash(i.row), shownOrDash(i.cell), shownOrDash(i.field), h("code", {}, i.code),
        i.message, shownOrDash(i.output_row)]), { id: "issues" })
      : h("p", {}, "No issue matches."));
  };
  fieldSelect.addEventListener("change", draw);
  severitySelect.addEventListener("change", draw);
  draw();
  const s = artifact.summary;
  return h("section", { "aria-labelledby": "issues-heading" },
    h("h2", { id: "issues-heading" }, `Issues (${number(s.errors + s.warnings)}: ${number(s.errors)} error(s), ${number(s.warnings)} warning(s); outcome ${s.outcome})`),
    table("Validation by field", ["Field", "Rule", "Values checked", "Errors", "Warnings"],
      v.fields.map((f) => [f.field, f.rule ? h("code", {}, f.rule) : "—", number(f.checked), number(f.errors), number(f.warnings)]),
      { id: "issues-by-field" }),
    issues.length ? h("div", { class: "toolbar" },
      h("div", { class: "field inline" }, h("label", { for: "issue-field" }, "Field"), fieldSelect),
      h("div", { class: "field inline" }, h("label", { for: "issue-severity" }, "Severity"), severitySelect)) : null,
    issues.length ? holder : h("p", {}, "No issue was raised."),
    artifact.issues_truncated ? h("p", { class: "warning" }, `Only the first ${issues.length} issues are listed; the counts above are complete.`) : null,
    artifact.transforms.length ? table("Transforms", ["Field", "Rule", "Values", "Changed", "Warnings"],
      artifact.transforms.map((t) => [t.field, h("code", {}, t.rule), number(t.values), number(t.changed), number(t.warnings)]),
      { id: "transforms" }) : null);
}

function passesSection(artifact) {
  return h("section", { "aria-labelledby": "passes-heading" },
    h("h2", { id: "passes-heading" }, "Passes"),
    table(null, ["Pass", "Seconds", "Counts"], artifact.passes.map((p) => [p.name, score(p.seconds),
      Object.entries(p.stats).map(([k, n]) => `${k.replaceAll("_", " ")}: ${number(n)}`).join(" · ")])),
    artifact.hooks.length ? table("Hooks called", ["Hook", "Rule", "Annotations returned"],
      artifact.hooks.map((hk) => [hk.hook, h("code", {}, hk.rule), number(hk.annotations.length)])) : null);
}

export function renderDecisions(main, jobId) {
  const path = workspacePath(`/jobs/${encodeURIComponent(jobId)}/artifact`);
  const body = h("div", { id: "decisions" }, h("p", { class: "muted" }, "Loading the decisions…"));
  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "← Jobs"), " / ",
      h("a", { href: `#/jobs/${jobId}`, class: "mono" }, jobId)),
    h("h1", {}, "Decisions"),
    body);
  api("GET", path).then((artifact) => {
    replace(body,
      definitionList([
        ["Config", `${artifact.config.title} ${artifact.config.version}`],
        ["Inputs", artifact.inputs.map((i) => `${i.name} (${i.format}, ${number(i.size_bytes)} bytes)`).join("; ")],
        ["Ran", h("span", {}, when(artifact.started_at), ` for ${score(artifact.duration_seconds)} s`)],
        ["Rows written", number(artifact.output.rows_written)],
        ["Mapped fields", artifact.output.columns.filter((c) => c.kind === "field").map((c) => c.field).join(", ")],
      ]),
      h("nav", { "aria-label": "Sections", class: "toc" }, h("ul", {},
        [["tables-heading", "Tables"], ["columns-heading", "Columns"], ["accounting-heading", "Row accounting"],
         ["issues-heading", "Issues"], ["passes-heading", "Passes"]]
          .map(([id, label]) => h("li", {}, h("a", { href: `#/jobs/${jobId}/decisions`, "data-target": id,
            onclick: (event) => {
              event.preventDefault();
              const target = document.getElementById(id);
              if (target) {
                target.scrollIntoView();
                target.setAttribute("tabindex", "-1");
                target.focus();
              }
            } }, label))))),
      tablesSection(artifact),
      h("section", { "aria-labelledby": "columns-heading" },
        h("h2", { id: "columns-heading" }, "Where each column went"),
        columnsSection(artifact)),
      accountingSection(artifact),
      issuesSection(artifact),
      passesSection(artifact));
  }).catch((error) => {
    const words = error instanceof ApiError && error.status === 409 ? "The job has not finished yet: its decisions come when it ends."
      : error instanceof ApiError && error.status === 404 ? "This job has no decisions record (it ended before the engine wrote one)." : null;
    replace(body, words ? h("p", {}, words) : null, errorBox(error));
  });
}
