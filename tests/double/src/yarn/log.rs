//! Log lines like Hadoop's log4j (`2024-05-01 10:00:00,123 INFO resourcemanager.ResourceManager: ...`),
//! written to stdout and `$HADOOP_LOG_DIR/<role>.log`; the STARTUP_MSG and SHUTDOWN_MSG
//! banners; the shutdown signal. Kept local to `yarn/` (the HDFS doubles may grow a shared one).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A daemon's logger. Cheap to clone.
#[derive(Clone)]
pub struct Logger {
    /// A std mutex: writes are short and never held across an await.
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl Logger {
    /// Opens `$HADOOP_LOG_DIR/<role>.log` for appending (stdout only when unset or unwritable).
    pub fn open(role: &str) -> Logger {
        let file = std::env::var_os("HADOOP_LOG_DIR").and_then(|dir| {
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{role}.log"))).ok()
        });
        Logger { file: Arc::new(Mutex::new(file)) }
    }

    pub fn log(&self, level: &str, class: &str, message: &str) {
        let line = format!("{} {level} {class}: {message}\n", timestamp(now_ms()));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
        if let Ok(mut guard) = self.file.lock()
            && let Some(f) = guard.as_mut()
        {
            let _ = f.write_all(line.as_bytes());
        }
    }

    pub fn info(&self, class: &str, message: &str) {
        self.log("INFO", class, message);
    }

    pub fn warn(&self, class: &str, message: &str) {
        self.log("WARN", class, message);
    }

    pub fn error(&self, class: &str, message: &str) {
        self.log("ERROR", class, message);
    }

    /// The STARTUP_MSG banner `StringUtils.startupShutdownMessage` prints.
    pub fn startup(&self, class: &str, daemon: &str, host: &str, ip: &str) {
        let msg = format!(
            "STARTUP_MSG: \n/************************************************************\n\
             STARTUP_MSG: Starting {daemon}\n\
             STARTUP_MSG:   host = {host}/{ip}\n\
             STARTUP_MSG:   args = []\n\
             STARTUP_MSG:   version = {}\n\
             STARTUP_MSG:   build = herd-hadoop-double: a TEST DOUBLE of Hadoop, not Hadoop\n\
             ************************************************************/",
            super::rest::VERSION
        );
        self.info(class, &msg);
    }

    pub fn shutdown_banner(&self, class: &str, daemon: &str, host: &str, ip: &str) {
        let msg = format!(
            "SHUTDOWN_MSG: \n/************************************************************\n\
             SHUTDOWN_MSG: Shutting down {daemon} at {host}/{ip}\n\
             ************************************************************/"
        );
        self.info(class, &msg);
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// `yyyy-MM-dd HH:mm:ss,SSS` in UTC (log4j's ISO8601 layout; containers run in UTC).
pub fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02},{:03}", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_log4j_iso8601() {
        assert_eq!(super::timestamp(0), "1970-01-01 00:00:00,000");
        assert_eq!(super::timestamp(1_714_557_600_123), "2024-05-01 10:00:00,123");
        assert_eq!(super::timestamp(951_782_400_000), "2000-02-29 00:00:00,000");
    }
}
