//! The work `/process` does: CPU duty cycles, resident memory, and the registry that admits and tracks tasks.

pub mod cpu;
pub mod memory;
pub mod tasks;
