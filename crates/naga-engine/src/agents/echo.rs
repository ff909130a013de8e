use super::{field, parameters, Agent, CallContext, CallOutcome};
use futures::future::BoxFuture;
use naga_core::wire::CallPayload;
use serde_json::Value;
use std::time::Duration;

/// Returns its `instruction`; `parameters.delay_ms` waits first. A
/// diagnostic agent and the benchmark's no-op.
pub struct Echo;

/// Longest `delay_ms` honoured (one hour).
const MAX_DELAY_MS: u64 = 3_600_000;

impl Agent for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn description(&self) -> &'static str {
        "Returns its instruction; parameters.delay_ms waits first (diagnostics, benchmarks)."
    }
    fn run<'a>(
        &'a self,
        call: &'a CallPayload,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            let delay = parameters(call).get("delay_ms").and_then(Value::as_u64);
            if let Some(ms) = delay {
                tokio::time::sleep(Duration::from_millis(ms.min(MAX_DELAY_MS))).await;
            }
            if parameters(call).get("fail").and_then(Value::as_bool) == Some(true) {
                return CallOutcome::failed(format!(
                    "echo was asked to fail: {}",
                    field(call, "instruction").unwrap_or("")
                ));
            }
            CallOutcome::ok(field(call, "instruction").unwrap_or("").to_owned())
        })
    }
}
