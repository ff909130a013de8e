use super::{Agent, CallContext, CallOutcome};
use futures::future::BoxFuture;
use naga_core::wire::CallPayload;
use serde::Serialize;

/// Desktop control. Registered so that callers see it and its availability;
/// it answers a clear failed result while it cannot act.
pub struct ComputerControl;

#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    pub ready: bool,
    pub capabilities: Vec<&'static str>,
    pub reasons: Vec<String>,
}

impl ComputerControl {
    pub fn availability(&self) -> Availability {
        let mut reasons = Vec::new();
        if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
            reasons.push(
                "no display: DISPLAY is not set (start naga inside an X11 session or under Xvfb)"
                    .to_owned(),
            );
        }
        reasons.push("desktop actions are not built into this version of naga yet".to_owned());
        Availability {
            ready: false,
            capabilities: Vec::new(),
            reasons,
        }
    }
}

impl Agent for ComputerControl {
    fn name(&self) -> &'static str {
        "computer_control"
    }
    fn description(&self) -> &'static str {
        "Controls the desktop: open apps, type, press keys, click, take screenshots."
    }
    fn available(&self) -> Result<(), String> {
        let a = self.availability();
        if a.ready {
            Ok(())
        } else {
            Err(a.reasons.join("; "))
        }
    }
    fn run<'a>(
        &'a self,
        _call: &'a CallPayload,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            match self.available() {
                Ok(()) => CallOutcome::failed("computer_control cannot act yet"),
                Err(why) => {
                    CallOutcome::failed(format!("computer_control is not available: {why}"))
                }
            }
        })
    }
}
