//! NagaAgent's own shapes (upstream `agentserver/agent_server.py` and
//! `task_scheduler.py`, commit b2cd671), put beside naga's fields on the
//! same routes so that upstream's clients read naga unchanged. Upstream's
//! times are Unix seconds as floats; its task states are `created`,
//! `running`, `completed` and `failed`.

use naga_core::{time::Millis, TaskStatus};
use naga_store::*;
use serde_json::{json, Map, Value};

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

/// A task as upstream's scheduler registers it, with naga's own beside.
pub fn task(t: &TaskRow) -> Value {
    json!({
        "id": t.id,
        "purpose": t.query.clone().unwrap_or_default(),
        "session_id": t.session_id,
        "analysis_session_id": t.analysis_session_id,
        "status": status(t.status),
        "created_at": secs(t.accepted_at),
        "steps_count": t.steps_count,
        "task_id": t.id,
        "kind": t.kind,
        "state": t.status,
        "error": t.error,
    })
}

/// `{command: count}`, as upstream keeps failed attempts.
pub fn failed_attempts(rows: &[FailedAttemptRow]) -> Value {
    let mut m = Map::new();
    for f in rows {
        let count = m.get(&f.command).and_then(Value::as_i64).unwrap_or(0) + f.count;
        m.insert(f.command.clone(), json!(count));
    }
    Value::Object(m)
}

/// `{key: value}`, as upstream keeps key facts.
pub fn key_facts(rows: &[KeyFactRow]) -> Value {
    Value::Object(
        rows.iter()
            .map(|k| (k.key.clone(), json!(k.value)))
            .collect(),
    )
}

/// A compressed memory with upstream's fields (read off its summary).
pub fn compressed(m: &CompressedMemoryRow) -> Value {
    let mut v = crate::views::compressed(m);
    let summary = v["summary"].clone();
    let list = |k: &str| match &summary[k] {
        Value::Array(a) => Value::Array(a.clone()),
        _ => json!([]),
    };
    v["memory_id"] = json!(m.id.to_string());
    v["key_findings"] = list("key_findings");
    v["failed_attempts"] = list("failed_attempts");
    v["next_steps"] = list("next_steps");
    v["current_status"] = match &summary["current_status"] {
        Value::String(s) => json!(s),
        _ => json!(summary.as_str().unwrap_or_default()),
    };
    v["source_steps"] = summary["source_steps"]
        .as_i64()
        .map_or(json!(0), |n| json!(n));
    v
}

/// Upstream's text summary of a task's memory: its key facts, then its
/// steps, newest last ("无历史记录" when it has none).
pub fn task_memory_summary(facts: &[KeyFactRow], steps: &[StepRow], failed: &Value) -> String {
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
            if let Some(n) = failed.get(command).and_then(Value::as_i64) {
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

/// A session as upstream lists it.
pub fn session(s: &SessionRow, counts: [usize; 3]) -> Value {
    let [compressed, key_facts, failed] = counts;
    let mut v = crate::views::session(s);
    for (k, val) in [
        ("created_at", json!(secs(s.created_at))),
        ("last_activity", json!(secs(s.last_activity_at))),
        ("tasks_count", json!(s.task_count)),
        ("compressed_memories_count", json!(compressed)),
        ("key_facts_count", json!(key_facts)),
        ("failed_attempts_count", json!(failed)),
    ] {
        v[k] = val;
    }
    v
}
