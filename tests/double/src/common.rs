//! What every double shares: Hadoop-style logging (stdout plus `$HADOOP_LOG_DIR/<role>.log`),
//! the `STARTUP_MSG`/`SHUTDOWN_MSG` banners, the SIGTERM/SIGINT shutdown future, wall-clock
//! formatting as Java prints it, and disk space.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The role's log file, opened once by [`init_log`]; `None` when not writable.
static LOG_FILE: OnceLock<Mutex<Option<std::fs::File>>> = OnceLock::new();

/// Opens `$HADOOP_LOG_DIR/<role>.log` for appending if it can be written (the folder may be
/// read-only or not ours: then the daemon logs to stdout only).
pub fn init_log(role: &str) {
    let dir = std::env::var("HADOOP_LOG_DIR").unwrap_or_else(|_| "/hadoop/logs".into());
    let file = std::fs::create_dir_all(&dir)
        .ok()
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&dir).join(format!("{role}.log"))).ok());
    let _ = LOG_FILE.set(Mutex::new(file));
}

/// Logs one line as log4j's default Hadoop layout does: `DATE TIME,ms LEVEL class: message`,
/// on stdout and in the role's log file.
pub fn log(level: &str, class: &str, msg: &str) {
    let line = format!("{} {level} {class}: {msg}\n", log_time(now_millis()));
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    if let Some(lock) = LOG_FILE.get()
        && let Ok(mut file) = lock.lock()
            && let Some(f) = file.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
}

/// The banner a Hadoop daemon prints when it starts (`StringUtils.startupShutdownMessage`).
pub fn startup_banner(class: &str, daemon: &str, host: &str, ip: &str) {
    let msg = format!(
        "STARTUP_MSG: \n/************************************************************\nSTARTUP_MSG: Starting {daemon}\nSTARTUP_MSG:   host = {host}/{ip}\nSTARTUP_MSG:   args = []\nSTARTUP_MSG:   version = 3.3.6 (herd TEST DOUBLE, NOT Hadoop)\nSTARTUP_MSG:   tenant = {} cluster = {} instance = {}\n************************************************************/",
        std::env::var("HERD_TENANT").unwrap_or_default(),
        std::env::var("HERD_CLUSTER").unwrap_or_default(),
        std::env::var("HERD_INSTANCE").unwrap_or_default(),
    );
    log("INFO", class, &msg);
}

/// The banner a Hadoop daemon prints when it stops.
pub fn shutdown_banner(class: &str, daemon: &str, host: &str, ip: &str) {
    let msg = format!(
        "SHUTDOWN_MSG: \n/************************************************************\nSHUTDOWN_MSG: Shutting down {daemon} at {host}/{ip}\n************************************************************/"
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
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

/// Splits epoch milliseconds into a UTC calendar time (Howard Hinnant's civil_from_days).
pub fn civil(millis: u64) -> Civil {
    let secs = (millis / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        millis: (millis % 1000) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// log4j's `yyyy-MM-dd HH:mm:ss,SSS`.
pub fn log_time(millis: u64) -> String {
    let c = civil(millis);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
}

/// Java's `Date.toString()` in UTC: `Thu Feb 02 12:00:00 UTC 2023`.
pub fn java_date(millis: u64) -> String {
    let c = civil(millis);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[c.weekday as usize % 7],
        MONTHS[(c.month as usize + 11) % 12],
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.year
    )
}

/// `hdfs dfs -ls`'s `yyyy-MM-dd HH:mm`.
pub fn ls_time(millis: u64) -> String {
    let c = civil(millis);
    format!("{:04}-{:02}-{:02} {:02}:{:02}", c.year, c.month, c.day, c.hour, c.minute)
}

/// Total and available bytes of the file system holding `path` (statvfs).
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call and `st` points to
    // writable memory of the right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize;
    Some((st.f_blocks * frsize, st.f_bavail * frsize))
}

/// Java's `Float.toString` for the percentages Hadoop prints (`100.0`, `33.333332`).
pub fn java_float(v: f32) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e7 { format!("{v:.1}") } else { format!("{v}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_matches_known_dates() {
        // 2023-02-02T12:00:00Z was a Thursday.
        assert_eq!(java_date(1_675_339_200_000), "Thu Feb 02 12:00:00 UTC 2023");
        assert_eq!(log_time(0), "1970-01-01 00:00:00,000");
        assert_eq!(ls_time(951_782_400_000), "2000-02-29 00:00");
    }

    #[test]
    fn floats_print_like_java() {
        assert_eq!(java_float(100.0), "100.0");
        assert_eq!(java_float(0.0), "0.0");
        assert_eq!(java_float(100.0 / 3.0), "33.333332");
    }
}
