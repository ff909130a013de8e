//! A build without the `desktop` feature: no X11 or input libraries are
//! linked, and computer_control reports itself unavailable with the reason.

use super::Input;
use serde_json::Value;
use std::path::Path;

const WHY: &str = "this naga was built without the `desktop` feature: computer_control cannot act";

/// No connection can be made: the type has no values.
pub(super) enum Connection {}

pub(super) fn display() -> Result<(), String> {
    Err(WHY.into())
}

pub(super) fn connect() -> Result<Connection, String> {
    Err(WHY.into())
}

pub(super) fn perform(connection: &mut Connection, _input: &Input) -> Result<(), String> {
    match *connection {}
}

pub(super) fn check_hotkey(_combo: &str) -> Result<(), String> {
    Err(WHY.into())
}

pub(super) fn screenshot(_dir: &Path) -> Result<Value, String> {
    Err(WHY.into())
}
