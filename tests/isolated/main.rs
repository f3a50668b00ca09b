//! Tests that measure time, latency or memory of the real binary, in a binary of their own and one at a time (each
//! holds `ALONE`): cargo runs test binaries one after another, so nothing else shares the machine's cores with them.

#[path = "../support/consumer.rs"]
#[allow(dead_code)] // Shared with tests/process, which uses all of it.
mod consumer;
mod fidelity;
mod neighbours;
mod overload;
#[path = "../support/receivers.rs"]
#[allow(dead_code)] // Shared with tests/process.
mod receivers;

/// Held for the whole of each test here.
pub static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
