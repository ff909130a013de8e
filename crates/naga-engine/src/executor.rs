//! What runs the calls of a task, per kind of task, and how their results
//! appear in the callback. The scheduler is the same for every kind.

use crate::agents::{AgentRegistry, CallContext, CallOutcome};
use futures::future::BoxFuture;
use naga_core::wire::{raw_json, CallPayload, RawJson};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

pub trait Executor: Send + Sync {
    /// Runs one call. Dropping the future stops it.
    fn run<'a>(&'a self, call: &'a CallPayload, ctx: &'a CallContext)
        -> BoxFuture<'a, CallOutcome>;
    /// The `command …` text of steps and memory.
    fn command(&self, call: &CallPayload) -> String;
    /// Who runs `call`, as `/metrics` labels it: an agent's or MCP
    /// service's name as configured (never a name a request made up).
    fn agent(&self, _call: &CallPayload) -> Cow<'static, str> {
        Cow::Borrowed("unknown")
    }
    /// `results[i]` of the callback, as JSON text.
    fn result_entry(&self, index: usize, call: &CallPayload, outcome: &CallOutcome) -> RawJson;
    /// An extra top-level `result` for upstream receivers of this kind.
    fn envelope_result(
        &self,
        _success: bool,
        _results: &[RawJson],
        _message: &str,
    ) -> Option<RawJson> {
        None
    }
}

/// Agent calls: `{"agent_call", "step_index", "result": {"success",
/// "result" | "error", "task_type", "instruction"}}`.
pub struct AgentExecutor {
    pub agents: AgentRegistry,
}

impl AgentExecutor {
    /// The name of the agent that runs `call` (the default one for a call
    /// that names none here), as `task_type` reports it.
    fn agent_of<'a>(&self, call: &'a CallPayload) -> Option<&'a str> {
        match self.agents.resolve(call) {
            Ok(agent) => Some(agent.name()),
            Err(_) => AgentRegistry::agent_name(call),
        }
    }
}

impl Executor for AgentExecutor {
    fn run<'a>(
        &'a self,
        call: &'a CallPayload,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(self.agents.run(call, ctx))
    }

    fn agent(&self, call: &CallPayload) -> Cow<'static, str> {
        Cow::Borrowed(self.agents.resolve(call).map_or("unknown", |a| a.name()))
    }

    fn command(&self, call: &CallPayload) -> String {
        let agent = self.agent_of(call).unwrap_or("?");
        match call.get("instruction").and_then(Value::as_str) {
            Some(i) => naga_core::ids::concat(&[agent, ": ", i]),
            None => format!("{agent}: {}", Value::Object(call.clone())),
        }
    }

    fn result_entry(&self, index: usize, call: &CallPayload, outcome: &CallOutcome) -> RawJson {
        // Printed from borrowed parts: this runs for every call of every
        // batch with a callback.
        raw_json(&AgentEntry {
            agent_call: call,
            step_index: index,
            result: AgentResult {
                success: outcome.success,
                result: outcome.result.as_ref(),
                error: outcome.error.as_deref(),
                task_type: self.agent_of(call),
                instruction: call.get("instruction"),
            },
        })
    }
}

/// An agent call's entry in a callback's `results`.
#[derive(Serialize)]
struct AgentEntry<'a> {
    agent_call: &'a CallPayload,
    step_index: usize,
    result: AgentResult<'a>,
}

#[derive(Serialize)]
struct AgentResult<'a> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    task_type: Option<&'a str>,
    instruction: Option<&'a Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_agent_result_entry_is_the_outcome_with_the_call_and_its_agent() {
        let executor = AgentExecutor {
            agents: AgentRegistry::default(),
        };
        let call: CallPayload = serde_json::from_value(
            json!({"agentType": "agent", "tool_name": "echo", "instruction": "hi", "n": [1, 2]}),
        )
        .unwrap();
        let entry = |i, call: &CallPayload, outcome: &CallOutcome| -> Value {
            serde_json::from_str(executor.result_entry(i, call, outcome).get()).unwrap()
        };
        assert_eq!(
            entry(3, &call, &CallOutcome::ok(json!({"echo": "hi"}))),
            json!({"agent_call": call, "step_index": 3, "result": {
                "success": true, "result": {"echo": "hi"},
                "task_type": "echo", "instruction": "hi"}})
        );
        let bare: CallPayload = serde_json::from_value(json!({"agentType": "agent"})).unwrap();
        assert_eq!(
            entry(0, &bare, &CallOutcome::failed("no agent")),
            json!({"agent_call": {"agentType": "agent"}, "step_index": 0, "result": {
                "success": false, "error": "no agent",
                "task_type": null, "instruction": null}})
        );
    }
}
