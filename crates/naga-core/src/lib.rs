//! Domain types of naga shared by every layer: identifiers, task states, the
//! wire contracts of docs/design.md and the configuration model. No I/O lives here.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod config;
pub mod ids;
pub mod limits;
pub mod runtime;
pub mod status;
pub mod time;
pub mod wire;

pub use ids::{IdError, SessionId};
pub use status::{
    CallStatus, DeliveryStatus, InboxStatus, MessageKind, MessageRole, TaskStatus, UnknownStored,
};
