//! Sessions and memory: key facts, failed attempts, summaries.

use super::tasks::{find_task, page_limit, ListQuery};
use crate::upstream;
use crate::{
    error::ApiResult,
    extract::{Path, Query},
    views, ApiError,
};
use axum::extract::State;
use naga_engine::Engine;
use naga_store::{MemoryScope, SessionRow, TaskFilter};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Most memory entries of each kind in one answer.
const MEMORY_LIMIT: i64 = 1000;

/// One kind of memory, as JSON, newest first.
async fn memory_part(
    engine: &Engine,
    scope: &MemoryScope,
    part: Part,
    limit: i64,
) -> ApiResult<Value> {
    let store = engine.reads();
    let list: Vec<Value> = match part {
        Part::KeyFacts => store
            .key_facts(scope, limit)
            .await?
            .iter()
            .map(views::key_fact)
            .collect(),
        Part::FailedAttempts => store
            .failed_attempts(scope, limit)
            .await?
            .iter()
            .map(views::failed_attempt)
            .collect(),
        Part::Compressed => store
            .compressed_memories(scope, limit)
            .await?
            .iter()
            .map(views::compressed)
            .collect(),
    };
    Ok(Value::Array(list))
}

#[derive(Clone, Copy)]
enum Part {
    KeyFacts,
    FailedAttempts,
    Compressed,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Self::KeyFacts => "key_facts",
            Self::FailedAttempts => "failed_attempts",
            Self::Compressed => "compressed_memories",
        }
    }
}

async fn memory_json(engine: &Engine, scope: &MemoryScope, limit: i64) -> ApiResult<Value> {
    let mut v = json!({"success": true});
    for part in [Part::KeyFacts, Part::FailedAttempts, Part::Compressed] {
        v[part.name()] = memory_part(engine, scope, part, limit).await?;
    }
    Ok(v)
}

/// `GET /tasks/{id}/memory`: naga's lists, and upstream's text summary
/// (`memory_summary`).
pub async fn task(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let t = find_task(&engine, &id).await?;
    let scope = MemoryScope::Task(id.clone());
    let mut v = memory_json(&engine, &scope, MEMORY_LIMIT).await?;
    let store = engine.reads();
    let facts = store.key_facts(&scope, MEMORY_LIMIT).await?;
    let failed = store
        .failed_attempts(&MemoryScope::Global, MEMORY_LIMIT)
        .await?;
    let steps = store.steps(&id).await?;
    v["memory_summary"] = json!(upstream::task_memory_summary(
        &facts,
        &steps,
        &upstream::failed_attempts(&failed)
    ));
    v["task_id"] = json!(id);
    v["session_id"] = json!(t.session_id);
    v["steps_count"] = json!(t.steps_count);
    Ok(axum::Json(v))
}

/// `DELETE /tasks/{id}/memory`: forgets the task's memory; its steps stay.
pub async fn clear_task(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    find_task(&engine, &id).await?;
    let removed = engine.clear_memory(MemoryScope::Task(id.clone())).await?;
    Ok(axum::Json(
        json!({"success": true, "message": format!("任务 {id} 的记忆已清除"), "task_id": id, "removed": removed}),
    ))
}

/// `GET /memory/global`: memory across sessions, newest first, with
/// counts; upstream's `global_summary` text and `failed_attempts` as
/// `{command: count}` (naga's list of them is `failed_attempts_list`).
pub async fn global(
    State(engine): State<Engine>,
    Query(p): Query<Page>,
) -> ApiResult<axum::Json<Value>> {
    let scope = MemoryScope::Global;
    let mut v = memory_json(&engine, &scope, page_limit(p.limit)?).await?;
    let store = engine.reads();
    let counts = store.counts().await?;
    let [compressed, facts, failures] = store.memory_counts(&scope).await?;
    let failed = store.failed_attempts(&scope, MEMORY_LIMIT).await?;
    v["failed_attempts_list"] = v["failed_attempts"].take();
    v["failed_attempts"] = upstream::failed_attempts(&failed);
    v["global_summary"] = json!(upstream::global_summary(
        &counts, compressed, facts, failures
    ));
    v["stats"] = serde_json::to_value(counts).unwrap_or_default();
    Ok(axum::Json(v))
}

/// `DELETE /memory/global`.
pub async fn clear_global(State(engine): State<Engine>) -> ApiResult<axum::Json<Value>> {
    let removed = engine.clear_memory(MemoryScope::Global).await?;
    Ok(axum::Json(
        json!({"success": true, "message": "全局记忆已清除", "removed": removed}),
    ))
}

/// `GET /sessions`: most recently active first.
pub async fn sessions(
    State(engine): State<Engine>,
    Query(p): Query<Page>,
) -> ApiResult<axum::Json<Value>> {
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
        sessions.push(upstream::session(s, counts));
    }
    Ok(axum::Json(
        json!({"success": true, "count": sessions.len(), "total_sessions": sessions.len(), "sessions": sessions}),
    ))
}

async fn find_session(engine: &Engine, id: &str) -> ApiResult<SessionRow> {
    engine.reads().session(id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no session `{id}` (a session exists once a batch names it)"
        ))
    })
}

/// `GET /sessions/{id}`: the session and its analysis sessions.
pub async fn session(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let s = find_session(&engine, &id).await?;
    let analysis: Vec<Value> = engine
        .reads()
        .analysis_sessions(&id)
        .await?
        .into_iter()
        .map(|(a, at)| json!({"analysis_session_id": a, "created_at": naga_core::time::iso(at)}))
        .collect();
    let mut v = views::session(&s);
    v["success"] = json!(true);
    v["analysis_session_ids"] = json!(analysis);
    Ok(axum::Json(v))
}

/// `GET /sessions/{id}/memory`: naga's lists, and upstream's summary
/// (`memory_summary`).
pub async fn session_memory(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let s = find_session(&engine, &id).await?;
    let scope = MemoryScope::Session(id.clone());
    let mut v = memory_json(&engine, &scope, MEMORY_LIMIT).await?;
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
    let tasks: Vec<String> = store
        .tasks(&filter)
        .await?
        .into_iter()
        .rev()
        .map(|t| t.id)
        .collect();
    let mut summary = upstream::session(&s, counts);
    summary["tasks"] = json!(tasks);
    summary["recent_key_facts"] = facts.iter().rev().map(|f| json!(f.value)).collect();
    summary["recent_compressed_memories"] = compressed
        .iter()
        .rev()
        .map(|m| {
            let m = upstream::compressed(m);
            json!({"memory_id": m["memory_id"], "key_findings": m["key_findings"],
                   "current_status": m["current_status"], "source_steps": m["source_steps"]})
        })
        .collect();
    summary["failed_attempts"] = upstream::failed_attempts(&failed);
    v["memory_summary"] = summary;
    v["session_id"] = json!(id);
    Ok(axum::Json(v))
}

/// `DELETE /sessions/{id}/memory`.
pub async fn clear_session(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    find_session(&engine, &id).await?;
    let removed = engine
        .clear_memory(MemoryScope::Session(id.clone()))
        .await?;
    Ok(axum::Json(
        json!({"success": true, "message": format!("会话 {id} 的记忆已清除"), "session_id": id, "removed": removed}),
    ))
}

/// `GET /sessions/{id}/tasks`: tasks of both kinds, newest first.
pub async fn session_tasks(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    find_session(&engine, &id).await?;
    let mut filter = q.filter()?;
    filter.session_id = Some(id.clone());
    // Upstream's task entries (its `id`, `purpose`, `status` words and
    // `created_at` in Unix seconds), naga's fields beside them.
    let tasks: Vec<Value> = engine
        .reads()
        .tasks(&filter)
        .await?
        .iter()
        .map(|t| {
            let mut v = views::task(t);
            if let (Some(v), Value::Object(up)) = (v.as_object_mut(), upstream::task(t)) {
                v.extend(up);
            }
            v
        })
        .collect();
    Ok(axum::Json(
        json!({"success": true, "session_id": id, "count": tasks.len(), "tasks": tasks}),
    ))
}

/// One kind of a session's memory, in upstream's shape (key facts and
/// failed attempts as objects, summaries as a list with upstream's fields)
/// with its `count`; naga's list of it is under `<kind>_list`.
async fn session_part(engine: &Engine, id: String, part: Part) -> ApiResult<axum::Json<Value>> {
    find_session(engine, &id).await?;
    let scope = MemoryScope::Session(id.clone());
    let store = engine.reads();
    let (upstream, list) = match part {
        Part::KeyFacts => {
            let rows = store.key_facts(&scope, MEMORY_LIMIT).await?;
            (
                upstream::key_facts(&rows),
                rows.iter().map(views::key_fact).collect(),
            )
        }
        Part::FailedAttempts => {
            let rows = store.failed_attempts(&scope, MEMORY_LIMIT).await?;
            (
                upstream::failed_attempts(&rows),
                rows.iter().map(views::failed_attempt).collect(),
            )
        }
        Part::Compressed => {
            let rows = store.compressed_memories(&scope, MEMORY_LIMIT).await?;
            let list: Vec<Value> = rows.iter().map(upstream::compressed).collect();
            (Value::Array(list.clone()), list)
        }
    };
    let count = match &upstream {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    let mut v = json!({"success": true, "session_id": id, "count": count});
    v[part.name()] = upstream;
    v[format!("{}_list", part.name())] = Value::Array(list);
    Ok(axum::Json(v))
}

pub async fn session_key_facts(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    session_part(&engine, id, Part::KeyFacts).await
}

pub async fn session_failed_attempts(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    session_part(&engine, id, Part::FailedAttempts).await
}

pub async fn session_compressed(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    session_part(&engine, id, Part::Compressed).await
}
