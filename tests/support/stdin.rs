//! A tool run with its input on stdin (the schema validators, the LogQL parser): what it printed and how it ended.

use std::io::Write;
use std::process::{Command, Output, Stdio};

pub(crate) fn run_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait")
}
