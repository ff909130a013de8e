//! The desktop itself, on X11: input through XTest (enigo), screenshots
//! through x11rb's GetImage and png. Built with the `desktop` feature (on by
//! default); `headless.rs` stands in for it without.

use super::{Input, PointerButton};
use enigo::{Axis, Button, Coordinate, Direction, Enigo, Key, Keyboard, Mouse, Settings};
use serde_json::{json, Value};
use std::path::Path;

/// One input connection to the display, kept open between actions.
pub(super) struct Connection(Enigo);

/// Checks that an X display answers.
pub(super) fn display() -> Result<(), String> {
    let name = std::env::var("DISPLAY").unwrap_or_default();
    if name.is_empty() {
        return Err(
            "no display: DISPLAY is not set (start naga inside an X11 session or under Xvfb)"
                .into(),
        );
    }
    x11rb::connect(Some(&name))
        .map(|_| ())
        .map_err(|e| format!("no display: cannot connect to X display `{name}`: {e}"))
}

pub(super) fn connect() -> Result<Connection, String> {
    Enigo::new(&Settings::default())
        .map(Connection)
        .map_err(|e| format!("cannot open the display for input: {e}"))
}

/// Sends one input action to the display.
pub(super) fn perform(connection: &mut Connection, input: &Input) -> Result<(), String> {
    let e = &mut connection.0;
    match input {
        Input::Type(text) => e.text(text).map_err(|e| format!("typing failed: {e}")),
        Input::Hotkey(combo) => {
            let keys = parse_hotkey(combo)?;
            press(e, &keys).map_err(|e| format!("pressing `{combo}` failed: {e}"))
        }
        Input::Pointer {
            x,
            y,
            button,
            click,
        } => {
            e.move_mouse(*x, *y, Coordinate::Abs)
                .map_err(|e| format!("moving failed: {e}"))?;
            if !click {
                return Ok(());
            }
            let button = match button {
                PointerButton::Left => Button::Left,
                PointerButton::Right => Button::Right,
                PointerButton::Middle => Button::Middle,
            };
            e.button(button, Direction::Click)
                .map_err(|e| format!("clicking failed: {e}"))
        }
        Input::Scroll { amount, horizontal } => {
            let axis = if *horizontal {
                Axis::Horizontal
            } else {
                Axis::Vertical
            };
            e.scroll(*amount, axis)
                .map_err(|e| format!("scrolling failed: {e}"))
        }
    }
}

/// Checks a hotkey's names before anything is pressed.
pub(super) fn check_hotkey(combo: &str) -> Result<(), String> {
    parse_hotkey(combo).map(|_| ())
}

/// `ctrl+shift+t`, `Return`, `alt+F4` → keys to hold, then the last to press.
fn parse_hotkey(combo: &str) -> Result<Vec<Key>, String> {
    let keys = combo
        .split('+')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| key(k).ok_or_else(|| format!("unknown key `{k}` in `{combo}`")))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(format!("no key in `{combo}`"));
    }
    Ok(keys)
}

fn key(name: &str) -> Option<Key> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "ctrl" | "control" => Key::Control,
        "alt" => Key::Alt,
        "shift" => Key::Shift,
        "super" | "win" | "meta" | "cmd" => Key::Meta,
        "return" | "enter" => Key::Return,
        "tab" => Key::Tab,
        "esc" | "escape" => Key::Escape,
        "backspace" => Key::Backspace,
        "delete" | "del" => Key::Delete,
        "space" => Key::Space,
        "up" => Key::UpArrow,
        "down" => Key::DownArrow,
        "left" => Key::LeftArrow,
        "right" => Key::RightArrow,
        "home" => Key::Home,
        "end" => Key::End,
        "pageup" => Key::PageUp,
        "pagedown" => Key::PageDown,
        f if f.starts_with('f')
            && f.len() > 1
            && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
        {
            [
                Key::F1,
                Key::F2,
                Key::F3,
                Key::F4,
                Key::F5,
                Key::F6,
                Key::F7,
                Key::F8,
                Key::F9,
                Key::F10,
                Key::F11,
                Key::F12,
            ][f[1..].parse::<usize>().ok()? - 1]
        }
        _ => {
            let mut chars = name.chars();
            let c = chars.next()?;
            if chars.next().is_some() {
                return None;
            }
            Key::Unicode(c.to_ascii_lowercase())
        }
    })
}

/// Holds every key but the last, clicks the last, releases in reverse.
fn press(e: &mut Enigo, keys: &[Key]) -> Result<(), enigo::InputError> {
    let (last, held) = keys.split_last().expect("at least one key");
    for k in held {
        e.key(*k, Direction::Press)?;
    }
    let result = e.key(*last, Direction::Click);
    for k in held.iter().rev() {
        e.key(*k, Direction::Release)?;
    }
    result
}

/// The whole screen as a PNG under `dir`.
pub(super) fn screenshot(dir: &Path) -> Result<Value, String> {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{ConnectionExt, ImageFormat};
    let (conn, screen_num) = x11rb::connect(None).map_err(|e| format!("no display: {e}"))?;
    let screen = &conn.setup().roots[screen_num];
    let (w, h) = (screen.width_in_pixels, screen.height_in_pixels);
    let image = conn
        .get_image(ImageFormat::Z_PIXMAP, screen.root, 0, 0, w, h, !0)
        .map_err(|e| format!("screenshot failed: {e}"))?
        .reply()
        .map_err(|e| format!("screenshot failed: {e}"))?;
    if image.depth != 24 && image.depth != 32 {
        return Err(format!("screenshot: unsupported depth {}", image.depth));
    }
    // 32 bits per pixel, BGRX → RGB.
    let rgb: Vec<u8> = image
        .data
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0]])
        .collect();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let path = dir.join(format!(
        "screenshot-{}.png",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut wr| wr.write_image_data(&rgb))
        .map_err(|e| format!("cannot encode the screenshot: {e}"))?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"path": path.display().to_string(), "width": w, "height": h, "bytes": bytes}))
}

#[cfg(test)]
mod tests {
    use super::{parse_hotkey, Key};

    #[test]
    fn hotkeys_parse() {
        assert_eq!(
            parse_hotkey("ctrl+d").unwrap(),
            vec![Key::Control, Key::Unicode('d')]
        );
        assert_eq!(parse_hotkey("alt+F4").unwrap(), vec![Key::Alt, Key::F4]);
        assert_eq!(parse_hotkey("Return").unwrap(), vec![Key::Return]);
        assert!(parse_hotkey("ctrl+nope").is_err());
        assert!(parse_hotkey("").is_err());
    }
}
