//! Pergola Stages server core.
//!
//! - [`store`]: the [`Store`] trait and its SQLite and PostgreSQL implementations;
//! - [`credentials`]: password hashes (Argon2id) and the random secrets behind sessions, API
//!   tokens, invitations and guest links (only their SHA-256 is stored);
//! - [`clock`]: where time comes from (injectable, so retention and purge are testable);
//! - [`services`]: the plain async operations behind every dashboard action, REST route and CLI
//!   command. They take typed input (parsed at those edges), check it against `pergola-domain`
//!   and never trust their caller.
//! - [`purge`]: the background task that deletes archived stages when they are due and bounds
//!   the events timelines.
//! - [`live`]: the bus on which the services publish what changed, for the live streams.
//! - [`places`]: counted places per key (a user's open streams, an address's waiting sign-ins).
//! - [`runtime`]: the [`Runtime`] seam between the services and what actually runs the stages.

pub mod artifacts;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod live;
pub mod metrics;
pub mod places;
pub mod purge;
pub mod runtime;
pub mod secrets;
pub mod services;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use runtime::{
    BuildMinter, ComponentUsage, EventSink, NoRuntime, Runtime, RuntimeError, StageKey, StageSpec, StopMode,
    StopReport, StopWait,
};
pub use secrets::SecretBox;
pub use services::Services;
pub use store::{connect, Store, StoreError};
