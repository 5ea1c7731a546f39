//! ResourceManager and NodeManager doubles and the `yarn` command.

use std::process::ExitCode;

/// Runs the ResourceManager or NodeManager double until SIGTERM.
pub fn daemon(role: &str) -> ExitCode {
    eprintln!("hadoop-double: {role} double not written yet");
    ExitCode::from(1)
}

/// `yarn ARGS...`.
pub fn command(_args: &[String]) -> ExitCode {
    eprintln!("yarn (double): not written yet");
    ExitCode::from(255)
}
