//! NagaAgent's own shapes (upstream `agentserver/agent_server.py` and
//! `task_scheduler.py`, commit b2cd671), put beside naga's fields on the
//! same routes so that upstream's clients read naga unchanged. Upstream's
//! times are Unix seconds as floats; its task states are `created`,
//! `running`, `completed` and `failed`.

use naga_core::{config::SessionPolicy, time::Millis, wire::TaskKind, TaskStatus};
use naga_engine::rows::{
    CompressedMemoryRow, Counts, FailedAttemptRow, KeyFactRow, SessionRow, StepRow, TaskRow,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Unix seconds, as upstream's `time.time()`.
pub fn secs(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// Upstream's word for a task state.
pub fn status(naga: TaskStatus) -> &'static str {
    match naga {
        TaskStatus::Queued => "created",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "completed",
        TaskStatus::Cancelled => "cancelled",
        TaskStatus::Failed | TaskStatus::TimedOut => "failed",
    }
}

/// A task as upstream's scheduler registers it (`id`, `purpose`, its
/// status words, `created_at` in Unix seconds), with naga's own beside.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = UpstreamTask)]
pub struct Task {
    pub id: String,
    pub purpose: String,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    /// Upstream's word: `created`, `running`, `completed`, `failed`, `cancelled`.
    pub status: &'static str,
    /// Unix seconds.
    pub created_at: f64,
    pub steps_count: i64,
    pub task_id: String,
    pub kind: TaskKind,
    /// naga's status.
    pub state: TaskStatus,
    pub error: Option<String>,
}

impl From<&TaskRow> for Task {
    fn from(t: &TaskRow) -> Self {
        Self {
            id: t.id.clone(),
            purpose: t.query.clone().unwrap_or_default(),
            session_id: t.session_id.clone(),
            analysis_session_id: t.analysis_session_id.clone(),
            status: status(t.status),
            created_at: secs(t.accepted_at),
            steps_count: t.steps_count,
            task_id: t.id.clone(),
            kind: t.kind,
            state: t.status,
            error: t.error.clone(),
        }
    }
}

/// A session's task: upstream's entry, naga's fields that it lacks beside.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionTask {
    #[serde(flatten)]
    pub task: Task,
    pub request_id: String,
    pub query: Option<String>,
    pub policy: SessionPolicy,
    pub calls_count: i64,
    pub callback_url: Option<String>,
    pub accepted_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub sequence: i64,
}

impl From<&TaskRow> for SessionTask {
    fn from(t: &TaskRow) -> Self {
        let naga = crate::views::Task::from(t);
        Self {
            task: Task::from(t),
            request_id: naga.request_id,
            query: naga.query,
            policy: naga.policy,
            calls_count: naga.calls_count,
            callback_url: naga.callback_url,
            accepted_at: naga.accepted_at,
            started_at: naga.started_at,
            finished_at: naga.finished_at,
            sequence: naga.sequence,
        }
    }
}

/// `{command: count}`, as upstream keeps failed attempts.
pub fn failed_attempts(rows: &[FailedAttemptRow]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for f in rows {
        *m.entry(f.command.clone()).or_insert(0) += f.count;
    }
    m
}

/// `{key: value}`, as upstream keeps key facts.
pub fn key_facts(rows: &[KeyFactRow]) -> BTreeMap<String, String> {
    rows.iter()
        .map(|k| (k.key.clone(), k.value.clone()))
        .collect()
}

/// A compressed memory with upstream's fields (read off its summary).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = UpstreamCompressed)]
pub struct Compressed {
    #[serde(flatten)]
    pub memory: crate::views::Compressed,
    #[serde(flatten)]
    pub brief: CompressedBrief,
    pub failed_attempts: Vec<Value>,
    pub next_steps: Vec<Value>,
}

/// What upstream's session summary shows of a compressed memory.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompressedBrief {
    pub memory_id: String,
    pub key_findings: Vec<Value>,
    pub current_status: String,
    pub source_steps: i64,
}

impl From<&CompressedMemoryRow> for Compressed {
    fn from(m: &CompressedMemoryRow) -> Self {
        let memory = crate::views::Compressed::from(m);
        let summary = &memory.summary;
        let list = |k: &str| match &summary[k] {
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        let brief = CompressedBrief {
            memory_id: m.id.to_string(),
            key_findings: list("key_findings"),
            current_status: match &summary["current_status"] {
                Value::String(s) => s.clone(),
                _ => summary.as_str().unwrap_or_default().to_owned(),
            },
            source_steps: summary["source_steps"].as_i64().unwrap_or(0),
        };
        Self {
            failed_attempts: list("failed_attempts"),
            next_steps: list("next_steps"),
            brief,
            memory,
        }
    }
}

/// Upstream's text summary of a task's memory: its key facts, then its
/// steps, newest last ("无历史记录" when it has none).
pub fn task_memory_summary(
    facts: &[KeyFactRow],
    steps: &[StepRow],
    failed: &BTreeMap<String, i64>,
) -> String {
    let mut s = String::new();
    if !facts.is_empty() {
        s.push_str("关键事实:\n");
        for f in facts.iter().rev() {
            s.push_str(&format!("- {}\n", f.value));
        }
        s.push('\n');
    }
    if !steps.is_empty() {
        s.push_str("最近详细步骤:\n");
        for (i, step) in steps.iter().enumerate() {
            s.push_str(&format!("步骤 {}:\n", i + 1));
            s.push_str(&format!(
                "- 目的: {}\n",
                step.purpose.as_deref().unwrap_or("")
            ));
            let command = step.content.as_deref().unwrap_or("");
            s.push_str(&format!("- 命令: {command}\n"));
            if let Some(out) = step.output.as_deref().filter(|o| !o.is_empty()) {
                s.push_str(&format!("- 输出: {}\n", naga_core::ids::clip(out, 200)));
            }
            if !step.success {
                s.push_str(&format!(
                    "- 状态: 失败 - {}\n",
                    step.error.as_deref().unwrap_or("")
                ));
            }
            if let Some(n) = failed.get(command) {
                s.push_str(&format!("- 历史失败次数: {n}\n"));
            }
            s.push('\n');
        }
    }
    if s.is_empty() {
        s.push_str("无历史记录");
    }
    s
}

/// Upstream's text summary of all memory.
pub fn global_summary(c: &Counts, compressed: usize, key_facts: usize, failures: usize) -> String {
    format!(
        "全局任务记忆摘要\n{}\n任务统计:\n- 总任务数: {}\n- 运行中: {}\n- 已完成: {}\n\n\
         记忆统计:\n- 总步骤数: {}\n- 压缩记忆块: {compressed}\n- 关键事实: {key_facts}\n- 失败尝试: {failures}\n",
        "=".repeat(50),
        c.tasks,
        c.active_tasks,
        c.tasks - c.active_tasks,
        c.steps,
    )
}

/// A session as upstream lists it (times in Unix seconds, its memory's
/// counts), naga's fields beside.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UpstreamSession)]
pub struct Session {
    pub session_id: String,
    /// Unix seconds.
    pub created_at: f64,
    pub last_activity_at: String,
    /// Unix seconds.
    pub last_activity: f64,
    pub task_count: i64,
    pub tasks_count: i64,
    pub active_tasks: i64,
    pub analysis_sessions: i64,
    pub compressed_memories_count: usize,
    pub key_facts_count: usize,
    pub failed_attempts_count: usize,
}

impl Session {
    pub fn new(s: &SessionRow, counts: [usize; 3]) -> Self {
        let [compressed, key_facts, failed] = counts;
        Self {
            session_id: s.id.clone(),
            created_at: secs(s.created_at),
            last_activity_at: naga_core::time::iso(s.last_activity_at),
            last_activity: secs(s.last_activity_at),
            task_count: s.task_count,
            tasks_count: s.task_count,
            active_tasks: s.active_tasks,
            analysis_sessions: s.analysis_sessions,
            compressed_memories_count: compressed,
            key_facts_count: key_facts,
            failed_attempts_count: failed,
        }
    }
}
