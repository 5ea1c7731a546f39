//! NameNode and DataNode doubles and the `hdfs` command.

use std::process::ExitCode;

/// Runs the NameNode or DataNode double until SIGTERM.
pub fn daemon(role: &str) -> ExitCode {
    eprintln!("hadoop-double: {role} double not written yet");
    ExitCode::from(1)
}

/// `hdfs ARGS...`.
pub fn command(_args: &[String]) -> ExitCode {
    eprintln!("hdfs (double): not written yet");
    ExitCode::from(255)
}
