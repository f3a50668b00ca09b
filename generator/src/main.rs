//! Surge load generator (see its own issue); builds so the workspace is whole.
fn main() {}
