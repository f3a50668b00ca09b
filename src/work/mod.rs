//! The work `/process` does: the capacity model, CPU work, resident memory, and the registry that queues, starts and
//! tracks tasks (`tasks`), in the vocabulary of `spec`, answering in the shapes of `answers`; the records of async
//! tasks, and the node's share for simulated work.

pub mod answers;
/// The pod's capacity rules, in a crate of their own the simulator plays too.
pub use surge_capacity as capacity;
pub mod cpu;
pub mod memory;
pub mod node;
pub mod records;
pub mod spec;
pub mod tasks;
