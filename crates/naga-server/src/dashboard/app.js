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

// Lists come a page at a time: "more" shows the next page (and a refresh
// reads again as many as are shown).
const PAGE = 100;

// The first `count` items of a list route, in requests of at most 1,000.
async function firstItems(path, key, count) {
  const items = [];
  const sep = path.includes("?") ? "&" : "?";
  for (let offset = 0; offset < count; offset += 1000) {
    const limit = Math.min(1000, count - offset);
    const page = (await api(`${path}${sep}limit=${limit}&offset=${offset}`))[key];
    items.push(...page);
    if (page.length < limit) break;
  }
  return items;
}

// A "more" entry at the end of a list when it may go on.
function more(id, shown, count, onclick) {
  return shown < count ? [] : [el("li", { class: "more", id, onclick }, `more (${shown} shown)`)];
}

async function loadSessions() {
  state.sessionCount ??= PAGE;
  const sessions = await firstItems("/sessions", "sessions", state.sessionCount);
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
    ...more("more-sessions", sessions.length, state.sessionCount, () => {
      state.sessionCount += PAGE;
      loadSessions().catch(console.error);
    }),
  );
  if (!state.session && sessions.length) selectSession(sessions[0].session_id);
}

async function selectSession(id) {
  const changed = state.session !== id;
  state.session = id;
  if (changed) state.taskCount = PAGE;
  if (changed) loadChat().catch(console.error);
  for (const li of $("sessions").children) li.classList.toggle("selected", li.dataset.session === id);
  $("tasks-title").textContent = `Tasks · ${id}`;
  await loadTasks();
}

async function loadTasks() {
  if (!state.session) return;
  state.taskCount ??= PAGE;
  const session = state.session;
  const path = `/tasks?session_id=${encodeURIComponent(session)}`;
  const tasks = await firstItems(path, "tasks", state.taskCount);
  if (session !== state.session) return;
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
    ...more("more-tasks", tasks.length, state.taskCount, () => {
      state.taskCount += PAGE;
      loadTasks().catch(console.error);
    }),
  );
}

async function selectTask(id) {
  state.task = id;
  for (const li of $("tasks").children) li.classList.toggle("selected", li.dataset.task === id);
  await loadTask();
}

async function loadTask() {
  if (!state.task) return;
  const id = state.task;
  const [t, cbs] = await Promise.all([
    api(`/tasks/${encodeURIComponent(id)}`),
    api(`/callbacks?task_id=${encodeURIComponent(id)}&limit=1`),
  ]);
  // Another task was selected meanwhile: its own load shows it.
  if (id !== state.task) return;
  const callback = cbs.callbacks[0];
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

// The chat panel: the selected session's conversation with the assistant
// (the API server's, when it runs in this process), through /ui/chat.
function chatSession() {
  state.chatSession ??= state.session ?? `dashboard-${Date.now().toString(36)}`;
  return state.chatSession;
}

function showMessages(messages) {
  $("chat-log").replaceChildren(
    ...messages.map((m) => el("div", { class: `msg ${m.role}`, "data-role": m.role }, m.content)));
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
}

async function loadChat() {
  if (state.session) state.chatSession = state.session;
  $("chat-title").textContent = `Chat · ${chatSession()}`;
  try {
    const { messages } = await api(`/ui/chat/${encodeURIComponent(chatSession())}`);
    showMessages(messages);
    $("chat-note").textContent = "";
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    $("chat-note").textContent = e.message;
  }
}

async function sendChat(e) {
  e.preventDefault();
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message) return;
  input.value = "";
  const log = $("chat-log");
  log.append(el("div", { class: "msg user", "data-role": "user" }, message));
  $("chat-note").textContent = "…";
  try {
    const reply = await api("/ui/chat", {
      method: "POST",
      body: JSON.stringify({ message, session_id: chatSession() }),
    });
    log.append(el("div", { class: "msg assistant", "data-role": "assistant" }, reply.response));
    log.scrollTop = log.scrollHeight;
    $("chat-note").textContent = "";
  } catch (err) {
    if (err instanceof Unauthorized) return askForToken();
    $("chat-note").textContent = err.message;
  }
}

// Every node on this store (several on PostgreSQL), read from the store:
// each node's dashboard shows the same ones.
async function loadNodes() {
  const { nodes, shared } = await api("/nodes");
  state.shared = shared;
  $("nodes-title").textContent = shared ? `Nodes · ${nodes.filter((n) => n.alive).length} alive` : "Node";
  $("nodes").replaceChildren(
    ...nodes.map((n) =>
      el("li", { "data-node": n.node_id, title: `started ${when(n.started_at)}` },
        el("span", { class: "id", title: n.node_id },
          el("span", { class: n.alive ? "dot alive" : "dot" }), n.node_id),
        el("span", { class: "muted" },
          `${n.this ? "this node · " : ""}${n.tasks} tasks · ${n.callbacks} callbacks · ` +
          (n.stopped_at ? "stopped" : ago(n.last_heartbeat_at)))),
    ),
  );
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  return s < 90 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

async function loadQueue() {
  const h = await api("/health");
  $("queue").textContent = `queue ${h.queue.agent + h.queue.mcp}`;
  const size = h.store.size;
  if (!size) return;
  const tasks = size.tables.find((t) => t.table === "tasks");
  $("store-size").textContent = `store ${megabytes(size.bytes)} · ${tasks ? tasks.rows : 0} tasks`;
  $("store-size").title = [
    `measured ${ago(size.measured_at)}; free for reuse ${megabytes(size.free_bytes)}`,
    ...size.tables.map((t) => `${t.table}: ${t.rows} rows` +
      (t.bytes == null ? "" : `, ${megabytes(t.bytes)}`) +
      (t.dead_rows == null ? "" : `, ${t.dead_rows} dead`)),
  ].join("\n");
}

let pending = null;
// Many events at once redraw once.
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 100);
}

async function refresh() {
  try {
    await Promise.all([loadSessions(), loadTasks(), loadTask(), loadQueue(), loadNodes()]);
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
  await loadChat();
  follow();
  // Other nodes' heartbeats, and on PostgreSQL the tasks they run, are not
  // in this node's feed: read them now and then.
  setInterval(() => (state.shared ? refresh() : loadNodes().catch(console.error)), 5000);
}

$("chat-form").addEventListener("submit", sendChat);

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("naga-token", state.token);
  start();
});

start();
