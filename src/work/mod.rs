//! The work `/process` does: the capacity model, CPU work, resident memory, and the registry that queues, starts and
//! tracks tasks, and the records of async tasks.

pub mod capacity;
pub mod cpu;
pub mod memory;
pub mod records;
pub mod tasks;
