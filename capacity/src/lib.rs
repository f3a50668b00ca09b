//! The capacity rules, written once: the consumer runs them on its tasks, the closed loop's node and the simulator
//! play them. Pure arithmetic, no I/O.
//!
//! - `pod`: how a pod's running tasks share its CPU, when a queued task may start, when queued work will finish.
//! - `node`: how a node's cores are shared among its pods as the kernel's CFS shares them.
//! - `signals`: the layouts of the histograms a pod exports about its work.

pub mod node;
pub mod pod;
pub mod signals;

pub use pod::{can_start, forecast, rate, share_level, task_demand, Demand, Forecast, Limits};
