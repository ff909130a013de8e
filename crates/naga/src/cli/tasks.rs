//! `naga tasks list|show|watch|cancel`.

use super::{field, Common};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    command: TasksCommand,
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Tasks, newest first.
    List {
        #[command(flatten)]
        common: Common,
        /// Only this session's.
        #[arg(long)]
        session: Option<String>,
        /// Only tasks in this state (queued, running, succeeded, failed,
        /// cancelled, timed_out).
        #[arg(long)]
        status: Option<String>,
        /// How many [default: the server's page].
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One task with its calls and steps.
    Show {
        #[command(flatten)]
        common: Common,
        id: String,
    },
    /// Follows a task until it ends: its state and each step as it is
    /// recorded. The exit status is non-zero unless it succeeded.
    Watch {
        #[command(flatten)]
        common: Common,
        id: String,
    },
    /// Cancels a task: a running call stops, the rest is skipped.
    Cancel {
        #[command(flatten)]
        common: Common,
        id: String,
    },
}

pub async fn run(a: TasksArgs) -> anyhow::Result<()> {
    match a.command {
        TasksCommand::List {
            common,
            session,
            status,
            limit,
        } => {
            let mut query = Vec::new();
            query.extend(session.map(|s| ("session_id", s)));
            query.extend(status.map(|s| ("status", s)));
            query.extend(limit.map(|l| ("limit", l.to_string())));
            let answer = common.get("/tasks", &query).await?;
            common.print(&answer, |v| {
                v["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(line)
                    .collect()
            });
            Ok(())
        }
        TasksCommand::Show { common, id } => {
            let task = common.get(&format!("/tasks/{id}"), &[]).await?;
            common.print(&task, |t| {
                let mut lines = vec![line(t)];
                lines.extend(t["calls"].as_array().into_iter().flatten().map(|c| {
                    format!(
                        "  call {}\t{}\t{}",
                        field(c, "index"),
                        field(c, "status"),
                        c["call"]["instruction"].as_str().unwrap_or("")
                    )
                }));
                lines.extend(t["steps"].as_array().into_iter().flatten().map(step_line));
                lines
            });
            Ok(())
        }
        TasksCommand::Watch { common, id } => {
            let mut shown_steps = 0;
            let mut shown_status = String::new();
            let task = follow(&common, &id, |t| {
                let status = field(t, "status");
                if status != shown_status {
                    match common.json {
                        true => println!("{}", json!({"task_id": id, "status": status})),
                        false => println!("{id}\t{status}"),
                    }
                    shown_status = status;
                }
                let steps = t["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
                for s in steps.iter().skip(shown_steps) {
                    match common.json {
                        true => println!("{s}"),
                        false => println!("{}", step_line(s)),
                    }
                }
                shown_steps = shown_steps.max(steps.len());
            })
            .await?;
            if !common.json {
                println!("{}", line(&task));
            }
            succeeded(&task)
        }
        TasksCommand::Cancel { common, id } => {
            let answer = common
                .post(&format!("/tasks/{id}/cancel"), &json!({}))
                .await?;
            common.print(&answer, |v| vec![format!("{id}\t{}", field(v, "status"))]);
            Ok(())
        }
    }
}

/// A task as one line: id, state, session, steps, when accepted, error.
pub fn line(t: &Value) -> String {
    format!(
        "{}\t{}\t{}\t{} steps\t{}\t{}",
        field(t, "task_id"),
        field(t, "status"),
        field(t, "session_id"),
        field(t, "steps_count"),
        field(t, "accepted_at"),
        t["error"].as_str().unwrap_or("")
    )
}

fn step_line(s: &Value) -> String {
    let outcome = match s["success"].as_bool() {
        Some(true) => s["output"].as_str().unwrap_or("ok").to_owned(),
        _ => format!("failed: {}", s["error"].as_str().unwrap_or("")),
    };
    format!(
        "  step {}\t{}\t{}",
        field(s, "step_id"),
        s["purpose"].as_str().unwrap_or(""),
        outcome.lines().next().unwrap_or("")
    )
}

/// Reads the task until it ends (`seen` gets each reading) and returns
/// its last reading.
pub async fn follow(
    common: &Common,
    id: &str,
    mut seen: impl FnMut(&Value),
) -> anyhow::Result<Value> {
    let path = format!("/tasks/{id}");
    loop {
        let task = common.get(&path, &[]).await?;
        seen(&task);
        if !matches!(task["status"].as_str(), Some("queued" | "running")) {
            return Ok(task);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `Ok` if the task succeeded, else the error a non-zero exit reports.
pub fn succeeded(task: &Value) -> anyhow::Result<()> {
    match task["status"].as_str() {
        Some("succeeded") => Ok(()),
        _ => anyhow::bail!(
            "task {} {}{}",
            field(task, "task_id"),
            field(task, "status"),
            task["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    }
}
