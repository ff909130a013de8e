//! `naga sessions list`.

use super::{field, Common};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    command: SessionsCommand,
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Sessions, most recently active first.
    List {
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(a: SessionsArgs) -> anyhow::Result<()> {
    let SessionsCommand::List { common } = a.command;
    let answer = common.get("/sessions", &[]).await?;
    common.print(&answer, |v| {
        v["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{}\t{} tasks\t{} active\t{}",
                    field(s, "session_id"),
                    field(s, "task_count"),
                    field(s, "active_tasks"),
                    field(s, "last_activity_at")
                )
            })
            .collect()
    });
    Ok(())
}
