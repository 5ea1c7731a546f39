//! The parameters of a log read (`GET .../instances/{instance}/logs`), checked once here for
//! the CLI, the orchestrator and the agent alike.

use std::time::{Duration, SystemTime};

use crate::validate::FieldError;

/// Which stream of a container's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// From when to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before now (on the host that holds the logs).
    Ago(Duration),
    /// From this time on.
    At(SystemTime),
}

impl Since {
    /// The time meant, given the time now.
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            Since::Ago(d) => now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
            Since::At(t) => t,
        }
    }
}

/// A checked log read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Keep streaming new lines.
    pub follow: bool,
    pub since: Option<Since>,
    /// Only the last N lines (before following).
    pub tail: Option<usize>,
    /// Only one stream; both when `None`.
    pub stream: Option<LogStream>,
}

/// The most lines `tail` may ask for.
pub const MAX_TAIL: usize = 1_000_000;

impl LogQuery {
    /// Checks the query parameters (absent or empty means the default); an error names its field.
    pub fn parse(follow: Option<&str>, since: Option<&str>, tail: Option<&str>, stream: Option<&str>) -> Result<Self, FieldError> {
        let follow = match nonempty(follow) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(v) => return Err(FieldError::new("follow", format!("`{v}` is not true or false"))),
        };
        let since = match nonempty(since) {
            None => None,
            Some(s) => Some(parse_since(s).map_err(|m| FieldError::new("since", m))?),
        };
        let tail = match nonempty(tail) {
            None | Some("all") => None,
            Some(t) => match t.parse::<usize>() {
                Ok(n) if n <= MAX_TAIL => Some(n),
                _ => return Err(FieldError::new("tail", format!("`{t}` is not a number of lines from 0 to {MAX_TAIL}"))),
            },
        };
        let stream = match nonempty(stream) {
            None => None,
            Some("stdout") => Some(LogStream::Stdout),
            Some("stderr") => Some(LogStream::Stderr),
            Some(s) => return Err(FieldError::new("stream", format!("`{s}` is not stdout or stderr"))),
        };
        Ok(LogQuery { follow, since, tail, stream })
    }
}

fn nonempty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// Parses `--since`: a duration before now (`10m`, `1h30m`) or an RFC 3339 time.
pub fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(Since::Ago(d));
    }
    humantime::parse_rfc3339_weak(s)
        .map(Since::At)
        .map_err(|_| format!("`{s}` is neither a duration (e.g. 10m, 1h30m) nor an RFC 3339 time (e.g. 2026-11-23T09:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_name_their_field() {
        let field = |r: Result<LogQuery, FieldError>| r.unwrap_err().field;
        assert_eq!(field(LogQuery::parse(None, None, Some("x"), None)), "tail");
        assert_eq!(field(LogQuery::parse(None, None, Some("-1"), None)), "tail");
        assert_eq!(field(LogQuery::parse(None, Some("yesterday"), None, None)), "since");
        assert_eq!(field(LogQuery::parse(None, None, None, Some("stdin"))), "stream");
        assert_eq!(field(LogQuery::parse(Some("maybe"), None, None, None)), "follow");
    }

    #[test]
    fn good_parameters_parse() {
        let q = LogQuery::parse(Some("true"), Some("10m"), Some("5"), Some("stderr")).unwrap();
        assert_eq!(q, LogQuery { follow: true, since: Some(Since::Ago(Duration::from_secs(600))), tail: Some(5), stream: Some(LogStream::Stderr) });
        assert_eq!(LogQuery::parse(None, None, None, None).unwrap(), LogQuery::default());
        let at = LogQuery::parse(None, Some("2026-11-23T09:00:00Z"), Some("all"), None).unwrap();
        assert!(matches!(at.since, Some(Since::At(_))) && at.tail.is_none());
    }
}
