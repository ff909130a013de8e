//! The JSON shapes upstream's code reads: a key's presence and type, as
//! the compatibility tests (`compat*.rs`) check answers against them.

use serde_json::Value;

/// A JSON type, as upstream's code reads it.
#[derive(Clone, Copy, Debug)]
pub enum T {
    Str,
    Num,
    Int,
    Bool,
    Arr,
    Obj,
    StrOrNull,
}

pub fn is(v: &Value, t: T) -> bool {
    match t {
        T::Str => v.is_string(),
        T::Num => v.is_number(),
        T::Int => v.is_i64(),
        T::Bool => v.is_boolean(),
        T::Arr => v.is_array(),
        T::Obj => v.is_object(),
        T::StrOrNull => v.is_string() || v.is_null(),
    }
}

/// Every key of `spec` is in `v` with its type.
#[track_caller]
pub fn shaped(what: &str, v: &Value, spec: &[(&str, T)]) {
    for (key, t) in spec {
        assert!(
            v.get(*key).is_some_and(|x| is(x, *t)),
            "{what}: `{key}` should be {t:?}: {v}"
        );
    }
}

pub const UPSTREAM_TASK: &[(&str, T)] = &[
    ("id", T::Str),
    ("purpose", T::Str),
    ("session_id", T::Str),
    ("analysis_session_id", T::StrOrNull),
    ("status", T::Str),
    ("created_at", T::Num),
    ("steps_count", T::Int),
];
