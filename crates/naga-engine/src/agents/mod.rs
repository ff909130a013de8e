//! Agents: what an agent call of a batch runs. An agent is picked by the
//! call's `tool_name`, else its `task_type`; the call's other fields are its
//! input.

mod computer_control;
mod echo;
pub mod file_edit;

pub use computer_control::{Availability, ComputerControl, Planner};
pub use echo::Echo;
pub use file_edit::FileEditToolkit;

use futures::future::BoxFuture;
use naga_core::wire::CallPayload;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{collections::BTreeMap, sync::Arc};

/// The outcome of one call, as stored and as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallOutcome {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CallOutcome {
    pub fn ok(result: impl Into<Value>) -> Self {
        Self {
            success: true,
            result: Some(result.into()),
            error: None,
        }
    }
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            success: false,
            result: None,
            error: Some(error.into()),
        }
    }
    /// Short text of the result, for steps and memory.
    pub fn text(&self) -> Option<String> {
        self.result.as_ref().map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The result as upstream's computer-control answers carry it: always a
    /// string, a failure as the JSON text upstream's agent returns
    /// (`{"success": false, "error", "message"}`).
    pub fn upstream_text(&self) -> String {
        self.text().unwrap_or_else(|| {
            let error = self.error.as_deref().unwrap_or("failed");
            serde_json::json!({"success": false, "error": error,
                               "message": format!("任务处理失败: {error}")})
            .to_string()
        })
    }
}

/// One step an agent reports while a call runs.
#[derive(Debug, Clone)]
pub struct StepNote {
    pub purpose: String,
    pub output: Option<String>,
    pub success: bool,
    pub error: Option<String>,
}

/// Where the steps of a call are recorded (the store, with its clock).
#[derive(Clone)]
pub struct StepLog {
    pub store: naga_store::Store,
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// Where a call runs; `steps` records the steps of long calls.
#[derive(Clone)]
pub struct CallContext {
    pub task_id: String,
    pub session_id: String,
    pub index: usize,
    pub steps: Option<StepLog>,
}

impl CallContext {
    /// Records a step of this call now (a failure to record is logged, not
    /// fatal: the call's own result is recorded when it ends).
    pub async fn note(&self, note: StepNote) {
        let Some(log) = &self.steps else { return };
        let step = naga_store::NewStep {
            task_id: self.task_id.clone(),
            call_idx: Some(self.index as i64),
            purpose: Some(note.purpose),
            content: None,
            output: note.output,
            analysis: None,
            success: note.success,
            error: note.error,
            created_at: log.clock.now_ms(),
        };
        if let Err(e) = log.store.add_step(step).await {
            tracing::warn!(task_id = %self.task_id, error = %e, "cannot record a step");
        }
    }
}

pub trait Agent: Send + Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// Runs one call. Dropping the future stops the call (cancellation).
    fn run<'a>(&'a self, call: &'a CallPayload, ctx: &'a CallContext)
        -> BoxFuture<'a, CallOutcome>;
    /// Whether the agent can work on this machine now, and why not.
    fn available(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The agents this server has, by name, and the one that runs calls that
/// name none of them.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: BTreeMap<&'static str, Arc<dyn Agent>>,
    default: Option<&'static str>,
}

impl AgentRegistry {
    pub fn with(mut self, agent: Arc<dyn Agent>) -> Self {
        self.agents.insert(agent.name(), agent);
        self
    }

    /// Runs calls that name no agent of this server on `name` (when it is
    /// one of them; an empty name: no default).
    pub fn with_default(mut self, name: &str) -> Self {
        self.default = self.agents.get_key_value(name).map(|(k, _)| *k);
        if self.default.is_none() && !name.is_empty() {
            tracing::warn!(default_agent = name, agents = %self.names().join(", "),
                "[agents] default_agent is not an agent of this server: calls that name none fail");
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Agent>> {
        self.agents.get(name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.agents.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Agent>> {
        self.agents.values()
    }

    /// The agent a call names: `tool_name`, else `task_type`.
    pub fn agent_name(call: &CallPayload) -> Option<&str> {
        ["tool_name", "task_type"]
            .iter()
            .find_map(|k| call.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
    }

    /// The agent that runs a call: the one it names, else the default
    /// (`[agents] default_agent`), else the reason there is none.
    pub fn resolve(&self, call: &CallPayload) -> Result<&Arc<dyn Agent>, String> {
        let named = Self::agent_name(call);
        if let Some(agent) = named.and_then(|n| self.get(n)) {
            return Ok(agent);
        }
        if let Some(agent) = self.default.and_then(|d| self.get(d)) {
            return Ok(agent);
        }
        let known = self.names().join(", ");
        Err(match named {
            None => format!(
                "the agent call names no agent: set `tool_name` (or `task_type`) to one of: {known}"
            ),
            Some(name) => format!("unknown agent `{name}`: this server has {known}"),
        })
    }

    /// Runs a call on its agent ([`AgentRegistry::resolve`]); no agent is a
    /// failed result naming the agents that exist.
    pub async fn run(&self, call: &CallPayload, ctx: &CallContext) -> CallOutcome {
        match self.resolve(call) {
            Ok(agent) => {
                if Self::agent_name(call) != Some(agent.name()) {
                    tracing::info!(task_id = %ctx.task_id, session_id = %ctx.session_id,
                        index = ctx.index, named = Self::agent_name(call).unwrap_or(""),
                        agent = agent.name(), "the call names no agent here: the default agent runs it");
                }
                agent.run(call, ctx).await
            }
            Err(why) => CallOutcome::failed(why),
        }
    }
}

/// The call's `parameters` object, or the call itself when it has none.
pub(crate) fn parameters(call: &CallPayload) -> &CallPayload {
    call.get("parameters")
        .and_then(Value::as_object)
        .unwrap_or(call)
}

/// A string field of the call: in `parameters`, else at the top level.
pub(crate) fn field<'a>(call: &'a CallPayload, key: &str) -> Option<&'a str> {
    parameters(call)
        .get(key)
        .or_else(|| call.get(key))
        .and_then(Value::as_str)
}
