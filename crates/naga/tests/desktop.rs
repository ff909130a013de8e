//! computer_control on a real X server (Xvfb) with a real xterm: text typed
//! (ASCII and Chinese), keys pressed, an app opened, a screenshot written,
//! and availability with and without a display. `.ci/run` installs Xvfb,
//! xterm and xdotool.

mod common;
use common::read;
use serde_json::{json, Value};
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh Xvfb display on a free number.
fn xvfb() -> (Kill, String) {
    assert!(
        Command::new("sh")
            .args([
                "-c",
                "command -v Xvfb && command -v xterm && command -v xdotool"
            ])
            .output()
            .unwrap()
            .status
            .success(),
        "Xvfb, xterm and xdotool are needed: apt-get install xvfb xterm xdotool (as .ci/run does)"
    );
    // A display number nobody holds; Xvfb exits if another took it first.
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for n in (200 + seed % 5000..).take(100) {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
            continue;
        }
        let mut child = Command::new("Xvfb")
            .args([
                &format!(":{n}"),
                "-screen",
                "0",
                "1024x768x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let socket = format!("/tmp/.X11-unix/X{n}");
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // lost the race for this number
            }
            // Ready once a client is served (the socket comes first).
            let probe = || {
                Command::new("xdotool")
                    .arg("getmouselocation")
                    .env("DISPLAY", format!(":{n}"))
                    .stderr(Stdio::null())
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if Path::new(&socket).exists() && probe() {
                // Another test's server may have answered: ours must still run.
                std::thread::sleep(Duration::from_millis(200));
                if child.try_wait().unwrap().is_none() {
                    return (Kill(child), format!(":{n}"));
                }
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "Xvfb did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free X display number");
}

/// `naga serve --only agent` with this display; returns it (killed and
/// reaped on drop) and its URL.
fn naga(dir: &Path, display: Option<&str>) -> (Kill, String) {
    naga_with(dir, display, "")
}

/// The same with more configuration (TOML prepended).
fn naga_with(dir: &Path, display: Option<&str>, extra: &str) -> (Kill, String) {
    let out = dir.join("out.txt");
    let config = dir.join("naga.toml");
    std::fs::write(
        &config,
        format!(
            "{extra}\n[agents.computer_control.apps]\ncat_window = [\"xterm\", \"-u8\", \"-T\", \"naga-cat\", \"-geometry\", \"80x10+0+0\", \"-e\", \"sh\", \"-c\", \"cat > {}\"]\n",
            out.display()
        ),
    )
    .unwrap();
    let (child, url) = common::spawn_naga(|cmd| {
        cmd.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("LANG", "C.UTF-8");
        match display {
            Some(d) => cmd.env("DISPLAY", d),
            None => cmd.env_remove("DISPLAY"),
        };
    });
    (Kill(child), url)
}

async fn run_batch(client: &reqwest::Client, url: &str, id: &str, calls: Value) -> Value {
    let body = json!({"agent_calls": calls, "session_id": "desk", "request_id": id});
    let (s, r) = read(
        client
            .post(format!("{url}/schedule"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    for _ in 0..1000 {
        let (_, t) = read(
            client
                .get(format!("{url}/tasks/{id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if !matches!(t["status"].as_str(), Some("queued" | "running")) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("batch {id} did not end");
}

fn action(params: Value) -> Value {
    json!({"tool_name": "computer_control", "agentType": "agent", "instruction": "desktop", "parameters": params})
}

/// Waits up to 15 s for a visible window named `name`.
async fn wait_for_window(display: &str, name: &str, what: &str) {
    let start = Instant::now();
    while windows(display, name) == 0 {
        assert!(start.elapsed() < Duration::from_secs(15), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn windows(display: &str, name: &str) -> usize {
    let out = Command::new("xdotool")
        .args(["search", "--onlyvisible", "--name", name])
        .env("DISPLAY", display)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_presses_keys_opens_apps_and_takes_screenshots_on_x11() {
    let (_x, display) = xvfb();
    let dir = tempfile::tempdir().unwrap();
    let (_naga, url) = naga(dir.path(), Some(&display));
    let client = reqwest::Client::new();

    let (_, a) = read(
        client
            .get(format!("{url}/computer_control/availability"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a["ready"], true, "{a}");
    assert_eq!(a["capabilities"]["enabled"], true, "{a}");
    assert!(a["capabilities"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("type")));
    assert!(a["actions"].as_array().unwrap().contains(&json!("type")));

    // Open the configured app; wait until its window is mapped.
    let t = run_batch(
        &client,
        &url,
        "open",
        json!([action(json!({"action": "open", "target": "cat_window"}))]),
    )
    .await;
    assert_eq!(t["status"], "succeeded", "{t}");
    wait_for_window(&display, "naga-cat", "the xterm window never appeared").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let xterm start `cat`

    // Focus it, type ASCII and Chinese, press Return, then ctrl+d ends `cat`.
    let calls = json!([
        action(json!({"action": "click", "x": 100, "y": 50})),
        action(json!({"action": "type", "text": "hello naga 你好世界"})),
        action(json!({"action": "hotkey", "keys": "Return"})),
        action(json!({"action": "hotkey", "keys": "ctrl+d"})),
        action(json!({"action": "screenshot"})),
        action(json!({"action": "scroll", "amount": -2}))
    ]);
    let t = run_batch(&client, &url, "typing", calls).await;
    assert_eq!(t["status"], "succeeded", "{t}");

    // Effects seen from outside the window: the file cat wrote, and the
    // window gone once ctrl+d ended cat.
    let out = dir.path().join("out.txt");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text == "hello naga 你好世界\n" && windows(&display, "naga-cat") == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "typed text not seen: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let shot = &t["calls"][4]["result"]["result"];
    let path = shot["path"].as_str().unwrap();
    assert!(
        path.starts_with(dir.path().join("data/screenshots").to_str().unwrap()),
        "{path}"
    );
    let png = std::fs::read(path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        (shot["width"].clone(), shot["height"].clone()),
        (json!(1024), json!(768))
    );
    assert_eq!(shot["bytes"], png.len());

    // Unknown apps and actions fail with reasons.
    let t = run_batch(
        &client,
        &url,
        "bad",
        json!([
            action(json!({"action": "open", "target": "rm -rf /"})),
            action(json!({"action": "teleport"})),
            action(json!({"action": "hotkey", "keys": "ctrl+nope"}))
        ]),
    )
    .await;
    let r: Vec<String> = t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["result"]["error"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        r[0].contains("no app") && r[0].contains("cat_window"),
        "{r:?}"
    );
    assert!(r[1].contains("teleport"), "{r:?}");
    assert!(r[2].contains("nope"), "{r:?}");

    // A free-form instruction needs a vision LLM: the reason says so.
    let t = run_batch(
        &client,
        &url,
        "free",
        json!([{"tool_name": "computer_control", "instruction": "打开记事本"}]),
    )
    .await;
    let e = t["calls"][0]["result"]["error"].as_str().unwrap();
    assert!(e.contains("vision_model"), "{e}");

    // Direct execution answers the same way.
    let (s, v) = read(
        client
            .post(format!("{url}/computer_control/execute"))
            .json(&json!({"parameters": {"action": "move", "x": 5, "y": 5}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    let out = Command::new("xdotool")
        .arg("getmouselocation")
        .env("DISPLAY", &display)
        .output()
        .unwrap();
    let at = String::from_utf8_lossy(&out.stdout);
    assert!(at.starts_with("x:5 y:5 "), "the pointer moved: {at}");
}

#[tokio::test]
async fn without_a_display_it_is_not_ready_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (_naga, url) = naga(dir.path(), None);
    let client = reqwest::Client::new();
    let (_, a) = read(
        client
            .get(format!("{url}/computer_control/availability"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a["ready"], false);
    assert!(a["reasons"][0].as_str().unwrap().contains("DISPLAY"), "{a}");
    let t = run_batch(
        &client,
        &url,
        "nodisplay",
        json!([action(json!({"action": "type", "text": "x"}))]),
    )
    .await;
    assert!(
        t["calls"][0]["result"]["error"]
            .as_str()
            .unwrap()
            .contains("no display"),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_form_instruction_is_planned_from_screenshots_one_action_at_a_time() {
    let llm = common::llm::ScriptedLlm::start().await;
    llm.script.vision.lock().unwrap().extend([
        json!({"action": "open", "target": "cat_window"}).to_string(),
        "Done. {\"done\": true, \"summary\": \"the window is open\"}".to_owned(),
    ]);
    let (_x, display) = xvfb();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[llm]\nbase_url = \"{}\"\nmodel = \"chat\"\n[agents.computer_control]\nvision_model = \"vision\"\nmax_steps = 5\n",
        llm.base_url
    );
    let (_naga, url) = naga_with(dir.path(), Some(&display), &extra);
    let client = reqwest::Client::new();
    let t = run_batch(
        &client,
        &url,
        "plan",
        json!([{"tool_name": "computer_control", "instruction": "把鼠标移到左上角"}]),
    )
    .await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let result = &t["calls"][0]["result"]["result"];
    assert_eq!(result["done"], true);
    assert_eq!(result["steps"], 1);
    assert_eq!(result["summary"], "the window is open");
    // The planned action is a step of its own, before the call's step.
    let steps = t["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(
        steps[0]["purpose"]
            .as_str()
            .unwrap()
            .starts_with("plan step 1: "),
        "{steps:?}"
    );
    assert_eq!(steps[0]["success"], true);
    // The model saw screenshots, with the vision model's name.
    let asked = llm.requests("vision");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0]["model"], "vision");
    let image = asked[0]["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert!(
        image.starts_with("data:image/png;base64,iVBOR"),
        "{}",
        &image[..40]
    );
    // The planned action had its effect: the app's window is there.
    wait_for_window(&display, "naga-cat", "the planned app never opened").await;
}
