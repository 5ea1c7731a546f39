//! Hadoop-style logging for the YARN doubles, with the names and signatures of the HDFS
//! engineer's `src/common.rs` (not yet merged): a merge replaces `super::log` with
//! `crate::common` and deletes this file. Lines as log4j's Hadoop layout
//! (`2024-05-01 10:00:00,123 INFO resourcemanager.ResourceManager: ...`) on stdout and in
//! `$HADOOP_LOG_DIR/<role>.log`; the STARTUP_MSG and SHUTDOWN_MSG banners; the shutdown signal.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The role's log file, opened once by [`init_log`]; `None` when not writable.
static LOG_FILE: OnceLock<Mutex<Option<std::fs::File>>> = OnceLock::new();

/// Opens `$HADOOP_LOG_DIR/<role>.log` for appending if it can be written (else stdout only).
pub fn init_log(role: &str) {
    let dir = std::env::var("HADOOP_LOG_DIR").unwrap_or_else(|_| "/hadoop/logs".into());
    let file = std::fs::create_dir_all(&dir)
        .ok()
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&dir).join(format!("{role}.log"))).ok());
    let _ = LOG_FILE.set(Mutex::new(file));
}

/// Logs one line: `DATE TIME,ms LEVEL class: message`, on stdout and in the role's log file.
pub fn log(level: &str, class: &str, msg: &str) {
    let line = format!("{} {level} {class}: {msg}\n", log_time(now_millis()));
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    if let Some(lock) = LOG_FILE.get()
        && let Ok(mut file) = lock.lock()
        && let Some(f) = file.as_mut()
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The banner a Hadoop daemon prints when it starts (`StringUtils.startupShutdownMessage`).
pub fn startup_banner(class: &str, daemon: &str, host: &str, ip: &str) {
    let msg = format!(
        "STARTUP_MSG: \n/************************************************************\n\
         STARTUP_MSG: Starting {daemon}\n\
         STARTUP_MSG:   host = {host}/{ip}\n\
         STARTUP_MSG:   args = []\n\
         STARTUP_MSG:   version = {} (herd TEST DOUBLE, NOT Hadoop)\n\
         ************************************************************/",
        super::rest::VERSION
    );
    log("INFO", class, &msg);
}

/// The banner a Hadoop daemon prints when it stops.
pub fn shutdown_banner(class: &str, daemon: &str, host: &str, ip: &str) {
    let msg = format!(
        "SHUTDOWN_MSG: \n/************************************************************\n\
         SHUTDOWN_MSG: Shutting down {daemon} at {host}/{ip}\n\
         ************************************************************/"
    );
    log("INFO", class, &msg);
}

/// Resolves when SIGTERM or SIGINT arrives (the one shutdown root of a daemon).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => log("ERROR", "org.apache.hadoop.util.SignalLogger", "RECEIVED SIGNAL 15: SIGTERM"),
                _ = int.recv() => log("ERROR", "org.apache.hadoop.util.SignalLogger", "RECEIVED SIGNAL 2: SIGINT"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// log4j's `yyyy-MM-dd HH:mm:ss,SSS` in UTC (Howard Hinnant's civil_from_days).
pub fn log_time(millis: u64) -> String {
    let secs = millis / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02},{:03}", rem / 3600, rem % 3600 / 60, rem % 60, millis % 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_log4j_iso8601() {
        assert_eq!(super::log_time(0), "1970-01-01 00:00:00,000");
        assert_eq!(super::log_time(1_714_557_600_123), "2024-05-01 10:00:00,123");
        assert_eq!(super::log_time(951_782_400_000), "2000-02-29 00:00:00,000");
    }
}
