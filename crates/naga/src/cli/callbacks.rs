//! `naga callbacks list|retry|redrive`: the callback outbox.

use super::{field, Common};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Args)]
pub struct CallbacksArgs {
    #[command(subcommand)]
    command: CallbacksCommand,
}

#[derive(Subcommand)]
enum CallbacksCommand {
    /// Callbacks, newest first.
    List {
        #[command(flatten)]
        common: Common,
        /// Only the dead-lettered ones.
        #[arg(long)]
        dead: bool,
    },
    /// Delivers a callback again (same webhook-id): a dead one goes back in
    /// the outbox.
    Retry {
        #[command(flatten)]
        common: Common,
        id: String,
    },
    /// Every dead callback (that died at or after `--since`) back in the
    /// outbox, oldest first.
    Redrive {
        #[command(flatten)]
        common: Common,
        /// Epoch milliseconds or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
}

pub async fn run(a: CallbacksArgs) -> anyhow::Result<()> {
    match a.command {
        CallbacksCommand::List { common, dead } => {
            let query: Vec<(&str, String)> = match dead {
                true => vec![("status", "dead".into())],
                false => Vec::new(),
            };
            let answer = common.get("/callbacks", &query).await?;
            common.print(&answer, |v| {
                v["callbacks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{}\t{}\t{}\t{} attempts\t{}\t{}",
                            field(c, "id"),
                            field(c, "task_id"),
                            field(c, "status"),
                            field(c, "attempts"),
                            field(c, "next_attempt_at"),
                            c["last_error"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            });
        }
        CallbacksCommand::Retry { common, id } => {
            let answer = common
                .post(&format!("/callbacks/{id}/retry"), &json!({}))
                .await?;
            common.print(&answer, |v| {
                vec![format!(
                    "{id}\t{}",
                    v["message"].as_str().unwrap_or("queued")
                )]
            });
        }
        CallbacksCommand::Redrive { common, since } => {
            let query: Vec<(&str, String)> = since.map(|s| ("since", s)).into_iter().collect();
            let answer = common
                .post_query("/callbacks/redrive", &query, &json!({}))
                .await?;
            common.print(&answer, |v| {
                v["callback_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|id| id.as_str().unwrap_or("").to_owned())
                    .collect()
            });
        }
    }
    Ok(())
}
