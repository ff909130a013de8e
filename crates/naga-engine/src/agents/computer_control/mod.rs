//! computer_control: desktop actions on X11, from structured parameters
//! (`{"action", "target", …}`, as the analyzer's prompt produces them):
//! `open` (an app configured by name; never a shell string), `type`
//! (Unicode included), `hotkey` (`ctrl+d`, `Return`, `alt+F4`), `click`,
//! `move`, `scroll`, `screenshot` (PNG under the data dir). The display
//! itself is `x11.rs` (the `desktop` feature, on by default); a build
//! without it links no X11 library and reports the agent unavailable.
//!
//! There is one desktop: one lock makes sure two sessions never act on it
//! at the same time.

#[cfg(not(feature = "desktop"))]
mod headless;
#[cfg(feature = "desktop")]
mod x11;

#[cfg(not(feature = "desktop"))]
use self::headless as display;
#[cfg(feature = "desktop")]
use self::x11 as display;

use super::{parameters, Agent, CallContext, CallOutcome, StepNote};
use display::{check_hotkey, connect, display, perform, screenshot, Connection};
use futures::future::BoxFuture;
use naga_core::wire::CallPayload;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

pub const ACTIONS: [&str; 7] = [
    "open",
    "type",
    "hotkey",
    "click",
    "move",
    "scroll",
    "screenshot",
];

pub struct ComputerControl {
    apps: BTreeMap<String, Vec<String>>,
    screenshots: PathBuf,
    /// The one desktop: actions take turns, across sessions.
    desktop: Arc<tokio::sync::Mutex<()>>,
    /// One input connection, kept open between actions (made again after
    /// an error).
    input: Arc<std::sync::Mutex<Option<Connection>>>,
    planner: Option<Planner>,
}

/// Plans a free-form instruction one action at a time: screenshot → vision
/// model → one action → repeat, within `max_steps` and `max_time`.
#[derive(Clone)]
pub struct Planner {
    pub llm: crate::llm::LlmClient,
    pub max_steps: usize,
    pub max_time: std::time::Duration,
}

const PLANNER_PROMPT: &str = "You control a Linux desktop to carry out the user's instruction. \
Each turn you get a screenshot and the actions done so far. Answer with ONE JSON object and nothing else: \
either an action {\"action\": \"open\"|\"type\"|\"hotkey\"|\"click\"|\"move\"|\"scroll\", ...} \
(open: target = app name; type: text; hotkey: keys like \"ctrl+s\"; click/move: x, y, button; scroll: amount), \
or {\"done\": true, \"summary\": \"what was achieved\"} when the instruction is carried out.";

#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    pub ready: bool,
    pub capabilities: Vec<&'static str>,
    pub reasons: Vec<String>,
}

impl ComputerControl {
    pub fn new(
        apps: BTreeMap<String, Vec<String>>,
        screenshots: PathBuf,
        planner: Option<Planner>,
    ) -> Self {
        Self {
            apps,
            screenshots,
            desktop: Arc::default(),
            input: Arc::default(),
            planner,
        }
    }

    /// The planner loop for a free-form instruction; every action it takes
    /// is recorded as a step of the call.
    async fn plan(
        &self,
        planner: &Planner,
        instruction: &str,
        ctx: &CallContext,
    ) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + planner.max_time;
        let mut done: Vec<String> = Vec::new();
        for step in 1..=planner.max_steps {
            if tokio::time::Instant::now() > deadline {
                break;
            }
            display()?;
            let dir = self.screenshots.clone();
            let shot = blocking(move || screenshot(&dir)).await?;
            let png = std::fs::read(shot["path"].as_str().unwrap_or_default())
                .map_err(|e| e.to_string())?;
            use base64::Engine as _;
            let image = base64::engine::general_purpose::STANDARD.encode(png);
            let messages = vec![
                json!({"role": "system", "content": PLANNER_PROMPT}),
                json!({"role": "user", "content": [
                    {"type": "text", "text": format!("Instruction: {instruction}\nDone so far: {done:?}\nNext?")},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{image}")}}
                ]}),
            ];
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let answer = tokio::time::timeout(remaining, planner.llm.chat_messages(&messages))
                .await
                .map_err(|_| "the planner ran out of time".to_owned())?
                .map_err(|e| format!("the vision LLM failed: {e}"))?;
            let Some(next) = first_object(&answer) else {
                return Err(format!(
                    "the vision LLM's answer has no JSON action: {}",
                    naga_core::ids::clip(&answer, 200)
                ));
            };
            if next.get("done").and_then(Value::as_bool) == Some(true) {
                return Ok(
                    json!({"done": true, "steps": step - 1, "actions": done, "summary": next.get("summary")}),
                );
            }
            let described = Value::Object(next.clone()).to_string();
            let result = self.act(&next, None).await;
            ctx.note(StepNote {
                purpose: format!("plan step {step}: {described}"),
                output: result.as_ref().ok().map(Value::to_string),
                success: result.is_ok(),
                error: result.as_ref().err().cloned(),
            })
            .await;
            result?;
            done.push(described);
        }
        Err(format!(
            "the planner did not finish within {} actions or {} s; done: {done:?}",
            planner.max_steps,
            planner.max_time.as_secs()
        ))
    }

    /// Ready when an X display answers.
    pub fn availability(&self) -> Availability {
        let reasons = match display() {
            Ok(_) => Vec::new(),
            Err(why) => vec![why],
        };
        Availability {
            ready: reasons.is_empty(),
            capabilities: if reasons.is_empty() {
                ACTIONS.to_vec()
            } else {
                Vec::new()
            },
            reasons,
        }
    }

    /// Runs one structured action on the desktop, holding the desktop lock.
    pub async fn act(
        &self,
        params: &Map<String, Value>,
        instruction: Option<&str>,
    ) -> Result<Value, String> {
        display()?;
        let action = params
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                "computer_control needs `parameters.action` (open, type, hotkey, click, move, scroll, screenshot), \
                 or, for a free-form instruction, a vision LLM: set [agents.computer_control] vision_model \
                 and [llm] base_url"
                    .to_owned()
            })?
            .to_ascii_lowercase();
        let _desktop = self.desktop.lock().await;
        let text_arg = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| params.get(*k).and_then(Value::as_str))
                .or(instruction)
                .map(str::to_owned)
        };
        match action.as_str() {
            "open" => {
                let name = text_arg(&["target", "app", "name"])
                    .ok_or("`open` needs `target`: the app's name")?;
                self.open(&name)
            }
            "type" => {
                let text = text_arg(&["text", "target"]).ok_or("`type` needs `text`")?;
                let typed = text.chars().count();
                self.input(Input::Type(text)).await?;
                Ok(json!({"typed": typed}))
            }
            "hotkey" | "key" | "press" => {
                let combo = text_arg(&["keys", "key", "target"])
                    .ok_or("`hotkey` needs `keys`, e.g. `ctrl+d`")?;
                check_hotkey(&combo)?;
                self.input(Input::Hotkey(combo.clone())).await?;
                Ok(json!({"pressed": combo}))
            }
            "click" | "move" => {
                let (x, y) = (coordinate(params, "x")?, coordinate(params, "y")?);
                let button = pointer_button(params)?;
                let click = action == "click";
                self.input(Input::Pointer {
                    x,
                    y,
                    button,
                    click,
                })
                .await?;
                Ok(json!({"x": x, "y": y, "clicked": click}))
            }
            "scroll" => {
                let amount = params.get("amount").and_then(Value::as_i64).unwrap_or(3) as i32;
                let horizontal = params.get("axis").and_then(Value::as_str) == Some("horizontal");
                self.input(Input::Scroll { amount, horizontal }).await?;
                Ok(json!({"scrolled": amount}))
            }
            "screenshot" => {
                let dir = self.screenshots.clone();
                blocking(move || screenshot(&dir)).await
            }
            other => Err(format!(
                "unknown action `{other}`: one of {}",
                ACTIONS.join(", ")
            )),
        }
    }

    /// Starts a configured app: program and arguments from
    /// `[agents.computer_control.apps]`, never a shell string.
    fn open(&self, name: &str) -> Result<Value, String> {
        let argv = self
            .apps
            .get(name)
            .or_else(|| self.apps.get(&name.to_lowercase()))
            .ok_or_else(|| {
                format!(
                    "no app `{name}` is configured: [agents.computer_control.apps] has [{}]",
                    self.apps.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| format!("app `{name}` has an empty command"))?;
        let child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let pid = child.id();
        // Reap it when it exits, without waiting here.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(json!({"opened": name, "pid": pid}))
    }
}

impl ComputerControl {
    /// Sends one input action on the kept connection, off the async threads.
    async fn input(&self, input: Input) -> Result<(), String> {
        let slot = self.input.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(connect()?);
            }
            let result = perform(slot.as_mut().expect("just made"), &input);
            if result.is_err() {
                *slot = None; // a broken connection is made again next time
            }
            result
        })
        .await
        .map_err(|e| format!("desktop action stopped: {e}"))?
    }
}

/// One input action, as the call's parameters name it.
#[cfg_attr(not(feature = "desktop"), allow(dead_code))]
pub(super) enum Input {
    Type(String),
    Hotkey(String),
    Pointer {
        x: i32,
        y: i32,
        button: PointerButton,
        click: bool,
    },
    Scroll {
        amount: i32,
        horizontal: bool,
    },
}

#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "desktop"), allow(dead_code))]
pub(super) enum PointerButton {
    Left,
    Right,
    Middle,
}

async fn blocking(
    f: impl FnOnce() -> Result<Value, String> + Send + 'static,
) -> Result<Value, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("desktop action stopped: {e}"))?
}

/// The first JSON object in a model's answer (tolerating prose and fences).
fn first_object(text: &str) -> Option<Map<String, Value>> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    serde_json::from_str(text.get(start..=end)?).ok()
}

fn pointer_button(params: &Map<String, Value>) -> Result<PointerButton, String> {
    match params
        .get("button")
        .and_then(Value::as_str)
        .unwrap_or("left")
    {
        "left" => Ok(PointerButton::Left),
        "right" => Ok(PointerButton::Right),
        "middle" => Ok(PointerButton::Middle),
        other => Err(format!("unknown button `{other}`: left, right or middle")),
    }
}

fn coordinate(params: &Map<String, Value>, key: &str) -> Result<i32, String> {
    params
        .get(key)
        .and_then(Value::as_i64)
        .map(|v| v as i32)
        .ok_or_else(|| format!("`{key}` (an integer pixel coordinate) is required"))
}

impl Agent for ComputerControl {
    fn name(&self) -> &'static str {
        "computer_control"
    }
    fn description(&self) -> &'static str {
        "Controls the desktop: parameters.action = open (target: app name), type (text), hotkey (keys, e.g. ctrl+d), click/move (x, y, button), scroll (amount), screenshot."
    }
    fn available(&self) -> Result<(), String> {
        display()
    }
    fn run<'a>(
        &'a self,
        call: &'a CallPayload,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            let params = parameters(call);
            let instruction = call.get("instruction").and_then(Value::as_str);
            let result = match (&self.planner, params.get("action"), instruction) {
                (Some(planner), None, Some(instruction)) => {
                    self.plan(planner, instruction, ctx).await
                }
                _ => self.act(params, instruction).await,
            };
            match result {
                Ok(v) => {
                    let action = params.get("action").and_then(Value::as_str).unwrap_or("");
                    tracing::info!(task_id = %ctx.task_id, session_id = %ctx.session_id, index = ctx.index,
                        action, "desktop action done");
                    CallOutcome::ok(v)
                }
                Err(e) => CallOutcome::failed(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_starts_only_a_configured_app_and_takes_no_arguments_from_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        let pwned = dir.path().join("pwned");
        let apps = BTreeMap::from([(
            "marker".to_owned(),
            vec!["touch".to_owned(), ok.display().to_string()],
        )]);
        let cc = ComputerControl::new(apps, dir.path().to_owned(), None);
        let p = pwned.display();
        for name in [
            format!("marker; touch {p}"),
            format!("marker && touch {p}"),
            format!("$(touch {p})"),
            format!("`touch {p}`"),
            format!("marker --output={p}"),
            format!("marker\ntouch {p}"),
            format!("touch {p}"),
            "/usr/bin/touch".to_owned(),
            "marker ".to_owned(),
            "../marker".to_owned(),
        ] {
            let refused = cc.open(&name).unwrap_err();
            assert!(refused.contains("no app"), "{name}: {refused}");
        }
        cc.open("marker").unwrap();
        cc.open("MARKER").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ok.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(ok.exists(), "the configured app ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!pwned.exists(), "nothing of a call's text ran");
    }
}
