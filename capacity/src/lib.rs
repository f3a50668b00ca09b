//! The capacity rules, written once: the consumer runs them on its tasks, the closed loop's node and the simulator
//! play them, and what a request may ask of a pod. Pure arithmetic, no I/O.
//!
//! - `pod`: how a pod's running tasks share its CPU, when a queued task may start, when queued work will finish.
//! - `node`: how a node's cores are shared among its pods as the kernel's CFS shares them.
//! - `request`: what one work request may ask for.
//! - `signals`: the layouts of the histograms a pod exports about its work.

pub mod node;
pub mod pod;
pub mod request;
pub mod signals;

pub use pod::{can_start, forecast, rate, share_level, task_demand, Demand, Forecast, Limits};
