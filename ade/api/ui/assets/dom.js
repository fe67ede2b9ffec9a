// Small DOM helpers. Text always goes in as text nodes (never innerHTML): whatever a file name,
// a header or a message holds, it is shown, not interpreted.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// A table inside a horizontally scrolling region (narrow windows), with a caption.
export function table(caption, headers, rows, attrs = {}) {
  const t = h("table", attrs,
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))),
  );
  return h("div", { class: "scroll", role: "region", tabindex: "0",
                    "aria-label": caption || headers.join(", ") }, t);
}

export function definitionList(pairs, attrs = {}) {
  return h("dl", { class: "facts", ...attrs },
    pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return h("time", { datetime: iso, title: iso }, d.toLocaleString());
}

export function number(n) {
  return typeof n === "number" ? n.toLocaleString() : n ?? "—";
}

export function statusBadge(status) {
  const words = { queued: "queued", running: "running", success: "succeeded",
                  error: "failed", cancelled: "cancelled" };
  return h("span", { class: `badge status-${status}` }, words[status] || status);
}

// Tell screen-reader users about something that changed outside their focus.
export function announce(text) {
  const region = document.getElementById("announce");
  if (region) region.textContent = text;
}

export function errorBox(error, attrs = {}) {
  const box = h("div", { class: "error", role: "alert", ...attrs });
  if (!error) return box;
  append(box, [h("p", {}, h("strong", {}, error.status ? `${error.status} ${error.code}: ` : ""),
                error.message || String(error))]);
  if (Array.isArray(error.details) && error.details.length) {
    append(box, [h("ul", {}, error.details.map((d) =>
      h("li", {}, d && typeof d === "object"
        ? `${d.location || d.field || ""}${d.location || d.field ? ": " : ""}${d.message ?? JSON.stringify(d)}`
        : String(d))))]);
  }
  return box;
}
