//! `naga serve`'s configuration: flags over `NAGA_…` environment variables
//! over the TOML file over the embedded defaults.

use anyhow::Context;
use clap::Args;
use naga_core::config::{Config, Service, Window};
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "NAGA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for the database and the agents' workspace [default: ./data].
    #[arg(long, env = "NAGA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite:… or postgres://… [default: sqlite://<data-dir>/naga.db].
    #[arg(long, env = "NAGA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// API server address [default: 127.0.0.1:8000].
    #[arg(long, env = "NAGA_API_ADDR")]
    pub api_addr: Option<String>,
    /// Agent server address [default: 127.0.0.1:8001].
    #[arg(long, env = "NAGA_AGENT_ADDR")]
    pub agent_addr: Option<String>,
    /// MCP server address [default: 127.0.0.1:8003].
    #[arg(long, env = "NAGA_MCP_ADDR")]
    pub mcp_addr: Option<String>,
    /// Run only these services (repeatable, or comma-separated).
    #[arg(long, env = "NAGA_ONLY", value_enum, value_delimiter = ',')]
    pub only: Vec<OnlyService>,
    /// `mcpServers` JSON file [default: <data-dir>/mcp_servers.json].
    #[arg(long, env = "NAGA_MCP_CONFIG")]
    pub mcp_config: Option<PathBuf>,
    /// OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1.
    #[arg(long, env = "NAGA_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// The LLM's API key.
    #[arg(long, env = "NAGA_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// The LLM's model name.
    #[arg(long, env = "NAGA_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// The bearer token every route but /health then needs (never logged).
    #[arg(long, env = "NAGA_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "NAGA_LOG_JSON")]
    pub log_json: bool,
    /// `[retention] tasks`: how long ended tasks are kept ("7d"; 0: for ever).
    #[arg(long, env = "NAGA_RETENTION_TASKS")]
    pub retention_tasks: Option<Window>,
    /// `[retention] callbacks`: delivered callbacks.
    #[arg(long, env = "NAGA_RETENTION_CALLBACKS")]
    pub retention_callbacks: Option<Window>,
    /// `[retention] dead_callbacks`: dead-lettered callbacks.
    #[arg(long, env = "NAGA_RETENTION_DEAD_CALLBACKS")]
    pub retention_dead_callbacks: Option<Window>,
    /// `[retention] conversations`: messages and session memory.
    #[arg(long, env = "NAGA_RETENTION_CONVERSATIONS")]
    pub retention_conversations: Option<Window>,
    /// `[retention] requests`: a pruned task's request id, after the prune.
    #[arg(long, env = "NAGA_RETENTION_REQUESTS")]
    pub retention_requests: Option<Window>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OnlyService {
    Api,
    Agent,
    Mcp,
}

impl From<OnlyService> for Service {
    fn from(s: OnlyService) -> Self {
        match s {
            OnlyService::Api => Service::Api,
            OnlyService::Agent => Service::Agent,
            OnlyService::Mcp => Service::Mcp,
        }
    }
}

impl ServeArgs {
    pub fn load(self) -> anyhow::Result<Config> {
        let mut set = toml::Table::new();
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file `{}`", path.display()))?;
                set = toml::from_str(&text)
                    .with_context(|| format!("config file `{}`", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("config file `{}`", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.database_url {
            config.database_url = Some(v);
        }
        if let Some(v) = self.api_addr {
            config.api_addr = v;
        }
        if let Some(v) = self.agent_addr {
            config.agent_addr = v;
        }
        if let Some(v) = self.mcp_addr {
            config.mcp_addr = v;
        }
        if !self.only.is_empty() {
            config.only = self.only.into_iter().map(Service::from).collect();
        }
        if let Some(v) = self.mcp_config {
            config.mcp.config = Some(v);
        }
        if let Some(v) = self.llm_base_url {
            config.llm.base_url = Some(v);
        }
        if let Some(v) = self.llm_api_key {
            config.llm.api_key = Some(v);
        }
        if let Some(v) = self.llm_model {
            config.llm.model = Some(v);
        }
        if let Some(v) = self.auth_token.filter(|t| !t.is_empty()) {
            config.auth.token = Some(v);
        }
        let retention = &mut config.retention;
        for (value, window) in [
            (self.retention_tasks, &mut retention.tasks),
            (self.retention_callbacks, &mut retention.callbacks),
            (self.retention_dead_callbacks, &mut retention.dead_callbacks),
            (self.retention_conversations, &mut retention.conversations),
            (self.retention_requests, &mut retention.requests),
        ] {
            if let Some(v) = value {
                *window = v;
            }
        }
        check_overridden(&set, &config)?;
        Ok(config)
    }
}

/// Settings of the file that another setting makes ineffective: refused
/// when naga would otherwise quietly do something else than asked, logged
/// when they merely do not apply.
fn check_overridden(set: &toml::Table, config: &Config) -> anyhow::Result<()> {
    let has = |table: &str, key: &str| {
        set.get(table)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key(key))
    };
    let backoff = ["backoff_base_ms", "backoff_max_ms"]
        .into_iter()
        .filter(|k| has("callbacks", k))
        .collect::<Vec<_>>();
    if !backoff.is_empty() && !config.callbacks.retry_schedule_ms.is_empty() {
        anyhow::bail!(
            "[callbacks] {} would do nothing: the retry schedule (retry_schedule_ms, {} by \
             default) decides every wait. Set `retry_schedule_ms = []` to retry with \
             exponential backoff instead, or remove {}",
            backoff.join(" and "),
            if has("callbacks", "retry_schedule_ms") {
                "set"
            } else {
                "5 s … 10 h"
            },
            if backoff.len() == 1 { "it" } else { "them" },
        );
    }
    let postgres = config
        .database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    if postgres {
        for key in ["synchronous", "max_batch"] {
            if has("store", key) {
                tracing::warn!(setting = %format!("[store] {key}"),
                    "this setting is SQLite's: on PostgreSQL it does nothing");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naga.toml");
        std::fs::write(
            &file,
            "agent_addr = \"127.0.0.1:9001\"\ndata_dir = \"/tmp/x\"\n[callbacks]\nmax_attempts = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            data_dir: Some("/tmp/y".into()),
            only: vec![OnlyService::Agent],
            ..Default::default()
        };
        let c = args.load().unwrap();
        assert_eq!(c.agent_addr, "127.0.0.1:9001");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.callbacks.max_attempts, 3);
        assert_eq!(c.api_addr, "127.0.0.1:8000");
        assert!(c.runs(Service::Agent) && !c.runs(Service::Api));

        std::fs::write(&file, "[callbacks]\nmax_atempts = 3\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .load()
        .unwrap_err();
        assert!(format!("{err:#}").contains("max_atempts"));
    }

    #[test]
    fn retention_windows_come_from_the_file_and_flags_and_a_bare_number_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naga.toml");
        std::fs::write(
            &file,
            "[retention]\ntasks = \"30s\"\ncallbacks = 0\nconversations = \"1h 30m\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            retention_dead_callbacks: Some("2d".parse().unwrap()),
            ..Default::default()
        };
        let r = args.load().unwrap().retention;
        assert_eq!(r.tasks.millis(), Some(30_000));
        assert_eq!(r.callbacks.millis(), None, "0 keeps for ever");
        assert_eq!(r.conversations.millis(), Some(5_400_000));
        assert_eq!(
            r.dead_callbacks.millis(),
            Some(172_800_000),
            "the flag wins"
        );
        assert_eq!(r.requests.millis(), Some(7 * 86_400_000), "the default");

        std::fs::write(&file, "[retention]\ntasks = 7\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .load()
        .unwrap_err();
        assert!(format!("{err:#}").contains("no unit"), "{err:#}");
        assert!("7 days".parse::<Window>().is_ok() && "soon".parse::<Window>().is_err());
    }

    #[test]
    fn backoff_settings_that_the_retry_schedule_overrides_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("naga.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            ServeArgs {
                config: Some(file.clone()),
                ..Default::default()
            }
            .load()
        };
        let err = load("[callbacks]\nbackoff_base_ms = 100\nbackoff_max_ms = 1000\n").unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("retry_schedule_ms = []") && err.contains("backoff_base_ms"),
            "{err}"
        );
        let err =
            load("[callbacks]\nretry_schedule_ms = [1000]\nbackoff_max_ms = 10\n").unwrap_err();
        assert!(format!("{err:#}").contains("backoff_max_ms"), "{err:#}");
        let c = load("[callbacks]\nretry_schedule_ms = []\nbackoff_base_ms = 100\n").unwrap();
        assert_eq!(c.callbacks.backoff_base_ms, 100);
        assert!(load("[callbacks]\nretry_schedule_ms = [1000]\n").is_ok());
    }
}
