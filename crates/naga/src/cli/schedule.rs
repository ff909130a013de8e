//! `naga schedule [--wait] INSTRUCTION…`: one batch of agent calls.

use super::{field, tasks, Common};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    common: Common,
    /// Conversation session id [default: a new one].
    #[arg(long)]
    session: Option<String>,
    /// Agent to run (echo, file_edit, computer_control).
    #[arg(long, default_value = "echo")]
    agent: String,
    /// Instructions, one call each, run in order.
    #[arg(required = true)]
    instructions: Vec<String>,
    /// Where the result is POSTed when the batch ends.
    #[arg(long)]
    callback_url: Option<String>,
    /// Idempotency key [default: a new one].
    #[arg(long)]
    request_id: Option<String>,
    /// Wait for the batch's end, with a progress bar on stderr; the exit
    /// status is non-zero unless it succeeded.
    #[arg(long)]
    wait: bool,
}

pub async fn run(a: ScheduleArgs) -> anyhow::Result<()> {
    let calls: Vec<Value> = a
        .instructions
        .iter()
        .map(|i| {
            json!({"tool_name": a.agent, "service_name": "agent_server", "instruction": i,
                   "agentType": "agent"})
        })
        .collect();
    let session = a
        .session
        .unwrap_or_else(|| format!("cli_{}", std::process::id()));
    let body = json!({
        "query": format!("批量Agent任务执行 ({} 个)", calls.len()),
        "agent_calls": calls,
        "session_id": session,
        "request_id": a.request_id,
        "callback_url": a.callback_url,
    });
    let answer = a.common.post("/schedule", &body).await?;
    if !a.wait {
        a.common.print(&answer, |v| {
            vec![format!("{}\t{}", field(v, "task_id"), field(v, "status"))]
        });
        return Ok(());
    }
    let Some(task_id) = answer["task_id"].as_str() else {
        anyhow::bail!(
            "the server scheduled nothing: {}",
            field(&answer, "message")
        );
    };
    let task = wait(&a.common, task_id, a.instructions.len()).await?;
    a.common.print(&task, |t| vec![tasks::line(t)]);
    tasks::succeeded(&task)
}

/// Follows the task until it ends, drawing its calls as a progress bar.
async fn wait(common: &Common, task_id: &str, calls: usize) -> anyhow::Result<Value> {
    let bar = indicatif::ProgressBar::new(calls as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg:20} [{bar:30}] {pos}/{len} calls")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(task_id.to_owned());
    let task = tasks::follow(common, task_id, |task| {
        let done = task["calls"]
            .as_array()
            .map_or(0, |c| c.iter().filter(|c| c["status"] != "pending").count());
        bar.set_position(done as u64);
        bar.set_message(format!("{task_id} {}", field(task, "status")));
    })
    .await;
    bar.finish_and_clear();
    task
}
