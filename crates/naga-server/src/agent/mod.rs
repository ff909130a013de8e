//! The agent server (default 127.0.0.1:8001): DESIGN.md's agent section.

mod events;
mod memory;
mod schedule;
pub(crate) mod tasks;
mod tools;

use axum::{
    routing::{get, post},
    Router,
};
use naga_engine::Engine;

pub use tasks::page_limit;

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/health", get(crate::health::agent))
        .route("/ready", get(crate::health::ready))
        .route("/metrics", get(crate::health::metrics))
        .route("/schedule", post(schedule::schedule))
        .route("/analyze_and_execute", post(schedule::analyze_and_execute))
        .route("/events", get(events::events))
        .route("/ui", get(crate::dashboard::page))
        .route("/ui/app.js", get(crate::dashboard::script))
        .route("/ui/app.css", get(crate::dashboard::style))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::get_one).delete(tasks::cancel))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/steps", post(tasks::add_step).get(tasks::steps))
        .route(
            "/tasks/{id}/memory",
            get(memory::task).delete(memory::clear_task),
        )
        .route(
            "/memory/global",
            get(memory::global).delete(memory::clear_global),
        )
        .route("/sessions", get(memory::sessions))
        .route("/sessions/{id}", get(memory::session))
        .route(
            "/sessions/{id}/memory",
            get(memory::session_memory).delete(memory::clear_session),
        )
        .route("/sessions/{id}/tasks", get(memory::session_tasks))
        .route("/sessions/{id}/key_facts", get(memory::session_key_facts))
        .route(
            "/sessions/{id}/failed_attempts",
            get(memory::session_failed_attempts),
        )
        .route(
            "/sessions/{id}/compressed_memories",
            get(memory::session_compressed),
        )
        .route("/callbacks", get(crate::callbacks::list))
        .route("/callbacks/{id}/retry", post(crate::callbacks::retry))
        .route("/callbacks/redrive", post(crate::callbacks::redrive))
        .route("/tools", get(tools::tools))
        .route("/toolkits", get(tools::toolkits))
        .route("/toolkits/{name}", get(tools::toolkit))
        .route("/tools/{toolkit}/{tool}", post(tools::call_tool))
        .route("/file/edit", post(tools::file_edit))
        .route("/file/write", post(tools::file_write))
        .route("/file/read", get(tools::file_read))
        .route("/file/list", get(tools::file_list))
        .route(
            "/computer_control/availability",
            get(tools::cc_availability),
        )
        .route("/computer_control/execute", post(tools::cc_execute))
        .with_state(engine)
}
