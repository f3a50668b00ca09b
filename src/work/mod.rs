//! The work `/process` does: the capacity model, CPU work, resident memory, and the registry that queues, starts and
//! tracks tasks.

pub mod capacity;
pub mod cpu;
pub mod memory;
pub mod tasks;
