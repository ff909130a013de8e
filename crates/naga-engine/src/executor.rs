//! What runs the calls of a task, per kind of task, and how their results
//! appear in the callback. The scheduler is the same for every kind.

use crate::agents::{AgentRegistry, CallContext, CallOutcome};
use futures::future::BoxFuture;
use naga_core::wire::CallPayload;
use serde_json::{json, Value};

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
        let mut result = serde_json::to_value(outcome).unwrap_or_default();
        result["task_type"] = json!(AgentRegistry::agent_name(call));
        result["instruction"] = call.get("instruction").cloned().unwrap_or(Value::Null);
        json!({"agent_call": call, "step_index": index, "result": result})
    }
}
