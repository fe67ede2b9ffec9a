// The page's only way to the server: the public API, with the signed-in key (if any) sent as
// `Authorization: Bearer` (websockets: `?access_token=`, browsers cannot set their headers).

const KEY = "ade.apiKey";            // sessionStorage: gone when the tab closes
const WORKSPACE = "ade.workspace";   // localStorage: the last workspace used
const WORKSPACES = "ade.workspaces"; // localStorage: workspaces used before (the picker's list)
const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  setKey: (key) => sessionStorage.setItem(KEY, key),
  clearKey: () => sessionStorage.removeItem(KEY),
  workspace: () => localStorage.getItem(WORKSPACE) || "default",
  workspaces() {
    try {
      const list = JSON.parse(localStorage.getItem(WORKSPACES) || "[]");
      return Array.isArray(list) ? list.filter((w) => typeof w === "string") : [];
    } catch {
      return [];
    }
  },
  setWorkspace(workspace) {
    localStorage.setItem(WORKSPACE, workspace);
    const list = [workspace, ...this.workspaces().filter((w) => w !== workspace)].slice(0, 20);
    localStorage.setItem(WORKSPACES, JSON.stringify(list));
  },
};

export function workspacePath(rest = "") {
  return `${API}/workspaces/${encodeURIComponent(session.workspace())}${rest}`;
}

function headers(extra = {}, key = session.key()) {
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// `signingIn`: the request checks a key being typed in; its 401 is the sign-in form's to show,
// not a signal that the signed-in key was refused.
async function errorFrom(response, signingIn = false) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error;
  const header = response.headers.get("Retry-After");
  const retryAfter = header && /^\d+$/.test(header) ? Number(header)
    : body && typeof body.retry_after_seconds === "number" ? body.retry_after_seconds : null;
  if (response.status === 401 && !signingIn) window.dispatchEvent(new CustomEvent("ade:unauthorized"));
  return new ApiError(response.status, error ? error.code : "http_error",
    error ? error.message : `${response.status} ${response.statusText}`,
    error ? error.details : null, retryAfter);
}

// fetch() a route; returns the Response when it succeeded, throws ApiError otherwise.
export async function call(method, path, { json, form, query, key, extraHeaders, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const init = { method, headers: headers(extraHeaders, key ?? session.key()), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (cause) {
    if (cause && cause.name === "AbortError") throw cause;
    throw new ApiError(0, "unreachable", `cannot reach ADE (${cause.message || cause})`, null, null);
  }
  if (!response.ok) throw await errorFrom(response, key !== undefined);
  return response;
}

export async function api(method, path, options) {
  const response = await call(method, path, options);
  return response.status === 204 ? null : response.json();
}

// The health document, whatever its status code (503 still describes what is wrong); an
// `auth` field the server does not report yet counts as "disabled".
export async function health() {
  let response;
  try {
    response = await fetch(`${API}/health`, { headers: headers() });
  } catch (cause) {
    throw new ApiError(0, "unreachable", `cannot reach ADE (${cause.message || cause})`);
  }
  if (response.status === 401) return { auth: "required", unauthorized: true };
  if (!response.ok && response.status !== 503) throw await errorFrom(response);
  return response.json();
}

// Save a response body as a file with the server's name (Content-Disposition).
export async function download(path, fallbackName) {
  const response = await call("GET", path);
  const disposition = response.headers.get("Content-Disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const plain = /filename="([^"]+)"/i.exec(disposition);
  const name = star ? decodeURIComponent(star[1]) : plain ? plain[1] : fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return name;
}

// A websocket event stream that reconnects: after a drop (4008: too slow; 1001: the server is
// restarting; 1006: connection lost) it comes back with ?after=<last seq seen>, so every event
// is delivered once. Ends for good on 1000 (the job finished) or close().
export function eventStream(path, { onEvent, onState, after = 0, replay = true } = {}) {
  let last = after;
  let socket = null;
  let closed = false;
  let retryTimer = null;
  let attempts = 0;

  function open() {
    const url = new URL(path, window.location.origin);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (replay) url.searchParams.set("after", String(last));
    const key = session.key();
    if (key) url.searchParams.set("access_token", key);
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      attempts = 0;
      onState && onState("live");
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (typeof event.seq === "number" && replay) last = Math.max(last, event.seq);
      onEvent && onEvent(event);
    });
    socket.addEventListener("close", (close) => {
      socket = null;
      if (closed) return;
      if (close.code === 1000) {
        onState && onState("ended");
        return;
      }
      attempts += 1;
      const delay = Math.min(10_000, 500 * 2 ** Math.min(attempts, 5));
      onState && onState("reconnecting", delay);
      retryTimer = setTimeout(open, delay);
    });
  }

  open();
  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      if (socket) socket.close(1000);
    },
  };
}
