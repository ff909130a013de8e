//! What runs the calls of a task, per kind of task, and how their results
//! appear in the callback. The scheduler is the same for every kind.

use crate::agents::{AgentRegistry, CallContext, CallOutcome};
use futures::future::BoxFuture;
use naga_core::wire::CallPayload;
use serde_json::{Map, Value};

pub trait Executor: Send + Sync {
    /// Runs one call. Dropping the future stops it.
    fn run<'a>(&'a self, call: &'a CallPayload, ctx: &'a CallContext)
        -> BoxFuture<'a, CallOutcome>;
    /// The `command …` text of steps and memory.
    fn command(&self, call: &CallPayload) -> String;
    /// `results[i]` of the callback.
    fn result_entry(&self, index: usize, call: &CallPayload, outcome: &CallOutcome) -> Value;
    /// An extra top-level `result` for upstream receivers of this kind.
    fn envelope_result(&self, _success: bool, _results: &[Value], _message: &str) -> Option<Value> {
        None
    }
}

/// Agent calls: `{"agent_call", "step_index", "result": {"success",
/// "result" | "error", "task_type", "instruction"}}`.
pub struct AgentExecutor {
    pub agents: AgentRegistry,
}

impl Executor for AgentExecutor {
    fn run<'a>(
        &'a self,
        call: &'a CallPayload,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(self.agents.run(call, ctx))
    }

    fn command(&self, call: &CallPayload) -> String {
        let agent = AgentRegistry::agent_name(call).unwrap_or("?");
        match call.get("instruction").and_then(Value::as_str) {
            Some(i) => format!("{agent}: {i}"),
            None => format!("{agent}: {}", Value::Object(call.clone())),
        }
    }

    fn result_entry(&self, index: usize, call: &CallPayload, outcome: &CallOutcome) -> Value {
        // Built from the parts (a map is a clone away), not through a
        // serializer: this runs for every call of every batch with a callback.
        let mut result = Map::new();
        result.insert("success".into(), Value::Bool(outcome.success));
        if let Some(r) = &outcome.result {
            result.insert("result".into(), r.clone());
        }
        if let Some(e) = &outcome.error {
            result.insert("error".into(), Value::String(e.clone()));
        }
        let task_type = AgentRegistry::agent_name(call).map(|a| Value::String(a.to_owned()));
        result.insert("task_type".into(), task_type.unwrap_or(Value::Null));
        let instruction = call.get("instruction").cloned();
        result.insert("instruction".into(), instruction.unwrap_or(Value::Null));
        let mut entry = Map::new();
        entry.insert("agent_call".into(), Value::Object(call.clone()));
        entry.insert("step_index".into(), Value::from(index));
        entry.insert("result".into(), Value::Object(result));
        Value::Object(entry)
    }
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
        assert_eq!(
            executor.result_entry(3, &call, &CallOutcome::ok(json!({"echo": "hi"}))),
            json!({"agent_call": call, "step_index": 3, "result": {
                "success": true, "result": {"echo": "hi"},
                "task_type": "echo", "instruction": "hi"}})
        );
        let bare: CallPayload = serde_json::from_value(json!({"agentType": "agent"})).unwrap();
        assert_eq!(
            executor.result_entry(0, &bare, &CallOutcome::failed("no agent")),
            json!({"agent_call": {"agentType": "agent"}, "step_index": 0, "result": {
                "success": false, "error": "no agent",
                "task_type": null, "instruction": null}})
        );
    }
}
