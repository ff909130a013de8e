// naga's dashboard: sessions, their tasks, a task's calls, steps and
// callback, live through GET /events. Every request carries the token (if
// the server asks for one) as `Authorization: Bearer`, never a cookie; the
// token is kept for this tab only (sessionStorage).
"use strict";

const state = { token: sessionStorage.getItem("naga-token"), session: null, task: null };
const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  const resp = await fetch(path, { ...options, headers });
  if (resp.status === 401) throw new Unauthorized();
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.detail || body.message || resp.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c ?? "");
  return e;
}

const status = (s) => el("span", { class: `status ${s}`, "data-status": s }, s);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

async function loadSessions() {
  const { sessions } = await api("/sessions?limit=100");
  const list = $("sessions");
  list.replaceChildren(
    ...sessions.map((s) =>
      el("li", {
        class: s.session_id === state.session ? "selected" : "",
        "data-session": s.session_id,
        onclick: () => selectSession(s.session_id),
      },
      el("span", { class: "id", title: s.session_id }, s.session_id),
      el("span", { class: "muted" }, `${s.active_tasks}/${s.task_count}`)),
    ),
  );
  if (!state.session && sessions.length) selectSession(sessions[0].session_id);
}

async function selectSession(id) {
  state.session = id;
  for (const li of $("sessions").children) li.classList.toggle("selected", li.dataset.session === id);
  $("tasks-title").textContent = `Tasks · ${id}`;
  await loadTasks();
}

async function loadTasks() {
  if (!state.session) return;
  const { tasks } = await api(`/tasks?session_id=${encodeURIComponent(state.session)}&limit=100`);
  $("tasks").replaceChildren(
    ...tasks.map((t) =>
      el("li", {
        class: t.task_id === state.task ? "selected" : "",
        "data-task": t.task_id,
        onclick: () => selectTask(t.task_id),
      },
      el("span", { class: "id", title: t.task_id }, `${t.kind} · ${t.task_id}`),
      status(t.status)),
    ),
  );
}

async function selectTask(id) {
  state.task = id;
  for (const li of $("tasks").children) li.classList.toggle("selected", li.dataset.task === id);
  await loadTask();
}

async function loadTask() {
  if (!state.task) return;
  const [t, cbs] = await Promise.all([
    api(`/tasks/${encodeURIComponent(state.task)}`),
    api("/callbacks?limit=500"),
  ]);
  const callback = cbs.callbacks.find((c) => c.task_id === t.task_id);
  const active = t.status === "queued" || t.status === "running";
  const box = $("task");
  box.replaceChildren(
    el("div", { class: "kv" },
      el("div", {}, "task"), el("div", { class: "id", id: "task-id" }, t.task_id),
      el("div", {}, "status"), el("div", { id: "task-status" }, status(t.status)),
      el("div", {}, "session"), el("div", {}, t.session_id),
      el("div", {}, "query"), el("div", {}, t.query ?? "–"),
      el("div", {}, "accepted"), el("div", {}, when(t.accepted_at)),
      el("div", {}, "finished"), el("div", {}, when(t.finished_at)),
      el("div", {}, "error"), el("div", { class: "error" }, t.error ?? "")),
    active ? el("button", { class: "danger", id: "cancel", onclick: () => cancel(t.task_id) }, "Cancel") : "",
    el("h2", {}, "Calls"),
    el("table", {},
      el("tr", {}, el("th", {}, "#"), el("th", {}, "call"), el("th", {}, "status"), el("th", {}, "result")),
      ...t.calls.map((c) => el("tr", {},
        el("td", {}, String(c.index)),
        el("td", {}, el("pre", {}, c.call.instruction ?? `${c.call.service_name ?? ""}.${c.call.tool_name ?? ""}`)),
        el("td", {}, status(c.status)),
        el("td", {}, el("pre", {}, c.result ? JSON.stringify(c.result.result ?? c.result.error ?? c.result) : ""))))),
    el("h2", {}, "Steps"),
    el("table", {},
      el("tr", {}, el("th", {}, "#"), el("th", {}, "purpose"), el("th", {}, "output")),
      ...t.steps.map((s) => el("tr", {},
        el("td", {}, String(s.step_id)),
        el("td", {}, s.purpose ?? ""),
        el("td", {}, el("pre", { class: s.success ? "" : "error" }, s.success ? (s.output ?? "") : (s.error ?? "")))))),
    el("h2", {}, "Callback"),
    callback
      ? el("div", { class: "kv", id: "callback" },
          el("div", {}, "status"), el("div", { id: "callback-status" }, status(callback.status)),
          el("div", {}, "url"), el("div", {}, callback.url),
          el("div", {}, "attempts"), el("div", {}, String(callback.attempts)),
          el("div", {}, "last error"),
          el("div", { class: "error" }, callback.status === "delivered" ? "" : (callback.last_error ?? "")),
          el("div", {}, "next attempt"), el("div", {}, callback.status === "pending" ? when(callback.next_attempt_at) : "–"),
          el("div", {}, ""),
          el("div", {}, callback.status === "dead"
            ? el("button", { id: "replay", onclick: () => replay(callback.id) }, "Replay")
            : ""))
      : el("p", { class: "muted" }, t.callback_url ? "not sent yet" : "none (no callback_url)"),
  );
}

async function cancel(id) {
  await api(`/tasks/${encodeURIComponent(id)}/cancel`, { method: "POST", body: "{}" });
  await refresh();
}

async function replay(id) {
  await api(`/callbacks/${encodeURIComponent(id)}/retry`, { method: "POST", body: "{}" });
  await refresh();
}

async function loadQueue() {
  const h = await api("/health");
  $("queue").textContent = `queue ${h.queue.agent + h.queue.mcp}`;
}

let pending = null;
// Many events at once redraw once.
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 100);
}

async function refresh() {
  try {
    await Promise.all([loadSessions(), loadTasks(), loadTask(), loadQueue()]);
  } catch (e) {
    if (e instanceof Unauthorized) return askForToken();
    console.error(e);
  }
}

// The live feed: fetch (not EventSource, which cannot send the token),
// read as server-sent events; reconnects after a second when it drops.
async function follow() {
  const headers = state.token ? { authorization: `Bearer ${state.token}` } : {};
  try {
    const resp = await fetch("/events", { headers });
    if (resp.status === 401) return askForToken();
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        if (block.startsWith("event: open")) {
          $("live").textContent = "live";
          $("live").classList.remove("off");
          refresh();
        } else if (!block.startsWith(":")) {
          refreshSoon();
        }
      }
    }
  } catch (e) {
    console.error(e);
  }
  $("live").textContent = "offline";
  $("live").classList.add("off");
  setTimeout(follow, 1000);
}

function askForToken() {
  $("app").hidden = true;
  $("login").hidden = false;
  $("token").focus();
}

async function start() {
  try {
    await api("/sessions?limit=1");
  } catch (e) {
    if (e instanceof Unauthorized) {
      if (state.token) $("login-error").textContent = "That token was refused.";
      return askForToken();
    }
  }
  $("login").hidden = true;
  $("app").hidden = false;
  await refresh();
  follow();
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("naga-token", state.token);
  start();
});

start();
