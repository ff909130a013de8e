//! Sessions and memory: key facts, failed attempts, summaries.

use super::tasks::{find_task, ListQuery};
use crate::extract::page_limit;
use crate::upstream;
use crate::{
    error::ApiResult,
    extract::{Path, Query},
    views::{self, Page, Removed},
    ApiError,
};
use axum::extract::State;
use naga_engine::rows::{MemoryScope, SessionRow, TaskFilter};
use naga_engine::Engine;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most memory entries of each kind in one answer.
const MEMORY_LIMIT: i64 = 1000;

/// Memory of one scope, each kind newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryLists {
    pub key_facts: Vec<views::KeyFact>,
    pub failed_attempts: Vec<views::FailedAttempt>,
    pub compressed_memories: Vec<views::Compressed>,
}

async fn memory_lists(engine: &Engine, scope: &MemoryScope, limit: i64) -> ApiResult<MemoryLists> {
    let store = engine.reads();
    Ok(MemoryLists {
        key_facts: views::all(&store.key_facts(scope, limit).await?),
        failed_attempts: views::all(&store.failed_attempts(scope, limit).await?),
        compressed_memories: views::all(&store.compressed_memories(scope, limit).await?),
    })
}

/// A task's memory, and upstream's text summary of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskMemory {
    pub success: bool,
    #[serde(flatten)]
    pub lists: MemoryLists,
    pub memory_summary: String,
    pub task_id: String,
    pub session_id: String,
    pub steps_count: i64,
}

/// `GET /tasks/{id}/memory`: naga's lists, and upstream's text summary
/// (`memory_summary`).
#[utoipa::path(get, path = "/tasks/{id}/memory", tag = "memory", params(("id" = String, Path)),
    responses((status = 200, description = "The task's memory", body = TaskMemory)))]
pub async fn task(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TaskMemory>> {
    let t = find_task(&engine, &id).await?;
    let scope = MemoryScope::Task(id.clone());
    let lists = memory_lists(&engine, &scope, MEMORY_LIMIT).await?;
    let store = engine.reads();
    let facts = store.key_facts(&scope, MEMORY_LIMIT).await?;
    let failed = store
        .failed_attempts(&MemoryScope::Global, MEMORY_LIMIT)
        .await?;
    let steps = store.steps(&id).await?;
    Ok(axum::Json(TaskMemory {
        success: true,
        lists,
        memory_summary: upstream::task_memory_summary(
            &facts,
            &steps,
            &upstream::failed_attempts(&failed),
        ),
        task_id: id,
        session_id: t.session_id,
        steps_count: t.steps_count,
    }))
}

/// `DELETE /tasks/{id}/memory`: forgets the task's memory; its steps stay.
#[utoipa::path(delete, path = "/tasks/{id}/memory", tag = "memory", params(("id" = String, Path)),
    responses((status = 200, description = "Forgotten", body = Removed)))]
pub async fn clear_task(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Removed>> {
    find_task(&engine, &id).await?;
    let removed = engine.clear_memory(MemoryScope::Task(id.clone())).await?;
    Ok(axum::Json(Removed {
        task_id: Some(id.clone()),
        ..Removed::new(format!("任务 {id} 的记忆已清除"), removed)
    }))
}

/// What the store holds, counted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub sessions: i64,
    pub tasks: i64,
    pub active_tasks: i64,
    pub steps: i64,
    pub pending_callbacks: i64,
    pub dead_callbacks: i64,
}

/// Memory across sessions; `failed_attempts` as upstream's `{command:
/// count}` (naga's list of them is `failed_attempts_list`).
#[derive(Debug, Serialize, ToSchema)]
pub struct GlobalMemory {
    pub success: bool,
    pub key_facts: Vec<views::KeyFact>,
    pub failed_attempts: BTreeMap<String, i64>,
    pub failed_attempts_list: Vec<views::FailedAttempt>,
    pub compressed_memories: Vec<views::Compressed>,
    pub global_summary: String,
    pub stats: Stats,
}

/// `GET /memory/global`: memory across sessions, newest first, with
/// counts and upstream's `global_summary` text.
#[utoipa::path(get, path = "/memory/global", tag = "memory", params(Page),
    responses((status = 200, description = "Memory across sessions", body = GlobalMemory)))]
pub async fn global(
    State(engine): State<Engine>,
    Query(p): Query<Page>,
) -> ApiResult<axum::Json<GlobalMemory>> {
    let scope = MemoryScope::Global;
    let lists = memory_lists(&engine, &scope, page_limit(p.limit)?).await?;
    let store = engine.reads();
    let c = store.counts().await?;
    let [compressed, facts, failures] = store.memory_counts(&scope).await?;
    let failed = store.failed_attempts(&scope, MEMORY_LIMIT).await?;
    Ok(axum::Json(GlobalMemory {
        success: true,
        key_facts: lists.key_facts,
        failed_attempts: upstream::failed_attempts(&failed),
        failed_attempts_list: lists.failed_attempts,
        compressed_memories: lists.compressed_memories,
        global_summary: upstream::global_summary(&c, compressed, facts, failures),
        stats: Stats {
            sessions: c.sessions,
            tasks: c.tasks,
            active_tasks: c.active_tasks,
            steps: c.steps,
            pending_callbacks: c.pending_callbacks,
            dead_callbacks: c.dead_callbacks,
        },
    }))
}

/// `DELETE /memory/global`.
#[utoipa::path(delete, path = "/memory/global", tag = "memory",
    responses((status = 200, description = "Forgotten", body = Removed)))]
pub async fn clear_global(State(engine): State<Engine>) -> ApiResult<axum::Json<Removed>> {
    let removed = engine.clear_memory(MemoryScope::Global).await?;
    Ok(axum::Json(Removed::new("全局记忆已清除".into(), removed)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub success: bool,
    pub count: usize,
    pub total_sessions: usize,
    pub sessions: Vec<upstream::Session>,
}

/// `GET /sessions`: most recently active first.
#[utoipa::path(get, path = "/sessions", tag = "sessions", params(Page),
    responses((status = 200, description = "Sessions, most recently active first", body = SessionList)))]
pub async fn sessions(
    State(engine): State<Engine>,
    Query(p): Query<Page>,
) -> ApiResult<axum::Json<SessionList>> {
    let rows = engine
        .reads()
        .sessions(page_limit(p.limit)?, p.offset.unwrap_or(0).max(0))
        .await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for s in &rows {
        let counts = engine
            .reads()
            .memory_counts(&MemoryScope::Session(s.id.clone()))
            .await?;
        sessions.push(upstream::Session::new(s, counts));
    }
    Ok(axum::Json(SessionList {
        success: true,
        count: sessions.len(),
        total_sessions: sessions.len(),
        sessions,
    }))
}

async fn find_session(engine: &Engine, id: &str) -> ApiResult<SessionRow> {
    engine.reads().session(id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no session `{id}` (a session exists once a batch names it)"
        ))
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisSession {
    pub analysis_session_id: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetail {
    pub success: bool,
    #[serde(flatten)]
    pub session: views::Session,
    pub analysis_session_ids: Vec<AnalysisSession>,
}

/// `GET /sessions/{id}`: the session and its analysis sessions.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path)),
    responses((status = 200, description = "The session", body = SessionDetail)))]
pub async fn session(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SessionDetail>> {
    let s = find_session(&engine, &id).await?;
    let analysis = engine
        .reads()
        .analysis_sessions(&id)
        .await?
        .into_iter()
        .map(|(a, at)| AnalysisSession {
            analysis_session_id: a,
            created_at: naga_core::time::iso(at),
        })
        .collect();
    Ok(axum::Json(SessionDetail {
        success: true,
        session: views::Session::from(&s),
        analysis_session_ids: analysis,
    }))
}

/// Upstream's summary of a session's memory.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    #[serde(flatten)]
    pub session: upstream::Session,
    /// The session's task ids, oldest first.
    pub tasks: Vec<String>,
    pub recent_key_facts: Vec<String>,
    pub recent_compressed_memories: Vec<upstream::CompressedBrief>,
    pub failed_attempts: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionMemory {
    pub success: bool,
    #[serde(flatten)]
    pub lists: MemoryLists,
    pub memory_summary: SessionSummary,
    pub session_id: String,
}

/// `GET /sessions/{id}/memory`: naga's lists, and upstream's summary
/// (`memory_summary`).
#[utoipa::path(get, path = "/sessions/{id}/memory", tag = "memory", params(("id" = String, Path)),
    responses((status = 200, description = "The session's memory", body = SessionMemory)))]
pub async fn session_memory(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SessionMemory>> {
    let s = find_session(&engine, &id).await?;
    let scope = MemoryScope::Session(id.clone());
    let lists = memory_lists(&engine, &scope, MEMORY_LIMIT).await?;
    let store = engine.reads();
    let counts = store.memory_counts(&scope).await?;
    let facts = store.key_facts(&scope, 5).await?;
    let failed = store.failed_attempts(&scope, 5).await?;
    let compressed = store.compressed_memories(&scope, 3).await?;
    let filter = TaskFilter {
        session_id: Some(id.clone()),
        limit: MEMORY_LIMIT,
        ..Default::default()
    };
    let tasks = store
        .tasks(&filter)
        .await?
        .into_iter()
        .rev()
        .map(|t| t.id)
        .collect();
    let memory_summary = SessionSummary {
        session: upstream::Session::new(&s, counts),
        tasks,
        recent_key_facts: facts.iter().rev().map(|f| f.value.clone()).collect(),
        recent_compressed_memories: compressed
            .iter()
            .rev()
            .map(|m| upstream::Compressed::from(m).brief)
            .collect(),
        failed_attempts: upstream::failed_attempts(&failed),
    };
    Ok(axum::Json(SessionMemory {
        success: true,
        lists,
        memory_summary,
        session_id: id,
    }))
}

/// `DELETE /sessions/{id}/memory`.
#[utoipa::path(delete, path = "/sessions/{id}/memory", tag = "memory", params(("id" = String, Path)),
    responses((status = 200, description = "Forgotten", body = Removed)))]
pub async fn clear_session(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Removed>> {
    find_session(&engine, &id).await?;
    let removed = engine
        .clear_memory(MemoryScope::Session(id.clone()))
        .await?;
    Ok(axum::Json(Removed {
        session_id: Some(id.clone()),
        ..Removed::new(format!("会话 {id} 的记忆已清除"), removed)
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionTasks {
    pub success: bool,
    pub session_id: String,
    pub count: usize,
    pub tasks: Vec<upstream::SessionTask>,
}

/// `GET /sessions/{id}/tasks`: tasks of both kinds, newest first, as
/// upstream's entries (its `id`, `purpose`, `status` words and `created_at`
/// in Unix seconds) with naga's fields beside them.
#[utoipa::path(get, path = "/sessions/{id}/tasks", tag = "sessions",
    params(("id" = String, Path), ListQuery),
    responses((status = 200, description = "The session's tasks, newest first", body = SessionTasks)))]
pub async fn session_tasks(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<SessionTasks>> {
    find_session(&engine, &id).await?;
    let mut filter = q.filter()?;
    filter.session_id = Some(id.clone());
    let tasks = engine.reads().tasks(&filter).await?;
    Ok(axum::Json(SessionTasks {
        success: true,
        session_id: id,
        count: tasks.len(),
        tasks: views::all(&tasks),
    }))
}

/// A session's key facts: upstream's `{key: value}`, naga's list beside.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionKeyFacts {
    pub success: bool,
    pub session_id: String,
    pub count: usize,
    pub key_facts: BTreeMap<String, String>,
    pub key_facts_list: Vec<views::KeyFact>,
}

#[utoipa::path(get, path = "/sessions/{id}/key_facts", tag = "memory", params(("id" = String, Path)),
    responses((status = 200, description = "The session's key facts", body = SessionKeyFacts)))]
pub async fn session_key_facts(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SessionKeyFacts>> {
    find_session(&engine, &id).await?;
    let rows = engine
        .reads()
        .key_facts(&MemoryScope::Session(id.clone()), MEMORY_LIMIT)
        .await?;
    let key_facts = upstream::key_facts(&rows);
    Ok(axum::Json(SessionKeyFacts {
        success: true,
        session_id: id,
        count: key_facts.len(),
        key_facts,
        key_facts_list: views::all(&rows),
    }))
}

/// A session's failed attempts: upstream's `{command: count}`, naga's list
/// beside.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionFailedAttempts {
    pub success: bool,
    pub session_id: String,
    pub count: usize,
    pub failed_attempts: BTreeMap<String, i64>,
    pub failed_attempts_list: Vec<views::FailedAttempt>,
}

#[utoipa::path(get, path = "/sessions/{id}/failed_attempts", tag = "memory",
    params(("id" = String, Path)),
    responses((status = 200, description = "The session's failed attempts", body = SessionFailedAttempts)))]
pub async fn session_failed_attempts(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SessionFailedAttempts>> {
    find_session(&engine, &id).await?;
    let rows = engine
        .reads()
        .failed_attempts(&MemoryScope::Session(id.clone()), MEMORY_LIMIT)
        .await?;
    let failed_attempts = upstream::failed_attempts(&rows);
    Ok(axum::Json(SessionFailedAttempts {
        success: true,
        session_id: id,
        count: failed_attempts.len(),
        failed_attempts,
        failed_attempts_list: views::all(&rows),
    }))
}

/// A session's compressed memories with upstream's fields (under both
/// names).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCompressed {
    pub success: bool,
    pub session_id: String,
    pub count: usize,
    pub compressed_memories: Vec<upstream::Compressed>,
    pub compressed_memories_list: Vec<upstream::Compressed>,
}

#[utoipa::path(get, path = "/sessions/{id}/compressed_memories", tag = "memory",
    params(("id" = String, Path)),
    responses((status = 200, description = "The session's compressed memories", body = SessionCompressed)))]
pub async fn session_compressed(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SessionCompressed>> {
    find_session(&engine, &id).await?;
    let rows = engine
        .reads()
        .compressed_memories(&MemoryScope::Session(id.clone()), MEMORY_LIMIT)
        .await?;
    let list: Vec<upstream::Compressed> = views::all(&rows);
    Ok(axum::Json(SessionCompressed {
        success: true,
        session_id: id,
        count: list.len(),
        compressed_memories: list.clone(),
        compressed_memories_list: list,
    }))
}
