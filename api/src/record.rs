//! One captured record per line: `TIMESTAMP STREAM PAYLOAD\n`.
//!
//! - `TIMESTAMP` is Docker's own, RFC 3339 in UTC with nine fraction digits (fixed width, so
//!   timestamps compare as strings);
//! - `STREAM` is `stdout`, `stderr`, or `herd` for the agent's own marker records
//!   (`herd container=ID`, written when a new container starts writing to the folder and at
//!   the top of every file);
//! - `PAYLOAD` is the line without its newline, escaped reversibly so that any bytes fit on one
//!   line: `\\` for a backslash, `\n` and `\r`, and `\xHH` for every byte that is not part of
//!   valid UTF-8. Valid UTF-8 without those three characters is written as it is.

use std::fmt;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
    /// The agent's own marker records.
    Herd,
}

impl Stream {
    /// The stream's name as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Herd => "herd",
        }
    }

    /// Parses a stream name as written in records.
    pub fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            b"herd" => Some(Stream::Herd),
            _ => None,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record read back from a file: borrowed parts of one line (without its `\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub ts: &'a [u8],
    pub stream: Stream,
    /// Still escaped; see [`unescape`].
    pub payload: &'a [u8],
}

/// Splits one record line (with or without its trailing `\n`); `None` when it is not one.
pub fn parse(line: &[u8]) -> Option<Line<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let sp = line.iter().position(|&b| b == b' ')?;
    let (ts, rest) = (&line[..sp], &line[sp + 1..]);
    let (stream, payload) = match rest.iter().position(|&b| b == b' ') {
        Some(sp2) => (&rest[..sp2], &rest[sp2 + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    Some(Line { ts, stream: Stream::parse(stream)?, payload })
}

/// Appends one record line to `out`.
pub fn encode(out: &mut Vec<u8>, ts: &[u8], stream: Stream, payload: &[u8]) {
    out.reserve(ts.len() + payload.len() + 10);
    out.extend_from_slice(ts);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    escape(out, payload);
    out.push(b'\n');
}

/// Appends `payload` escaped (see the module doc).
pub fn escape(out: &mut Vec<u8>, payload: &[u8]) {
    let special = |b: &u8| matches!(b, b'\\' | b'\n' | b'\r');
    let mut rest = payload;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(_) => (rest.len(), 0),
            Err(e) => (e.valid_up_to(), e.error_len().unwrap_or(rest.len() - e.valid_up_to())),
        };
        let text = &rest[..valid];
        if text.iter().any(special) {
            for &b in text {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        } else {
            out.extend_from_slice(text);
        }
        for &b in &rest[valid..valid + bad] {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
        rest = &rest[valid + bad..];
    }
}

/// Reverses [`escape`]; unknown escapes are kept as they are.
pub fn unescape(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        let b = payload[i];
        if b != b'\\' || i + 1 == payload.len() {
            out.push(b);
            i += 1;
            continue;
        }
        match payload[i + 1] {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'x' if let Some(v) = payload.get(i + 2..i + 4).and_then(hex) => {
                out.push(v);
                i += 4;
                continue;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
        i += 2;
    }
    out
}

fn hex(two: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(two).ok()?;
    u8::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_any_bytes() {
        let cases: Vec<Vec<u8>> = vec![
            b"plain text".to_vec(),
            b"back\\slash and \\x41 literal".to_vec(),
            b"cr\rlf\n".to_vec(),
            vec![0xff, 0xfe, b'a', 0x80, 0xc3],
            "h\u{e9}llo \u{1f600} tab\tesc\x1b[0m".as_bytes().to_vec(),
            (0u8..=255).collect(),
            vec![],
        ];
        for case in cases {
            let mut enc = Vec::new();
            escape(&mut enc, &case);
            assert!(!enc.contains(&b'\n') && !enc.contains(&b'\r'), "{enc:?}");
            assert!(std::str::from_utf8(&enc).is_ok(), "escaped form is UTF-8");
            assert_eq!(unescape(&enc), case);
        }
    }

    #[test]
    fn records_parse_back() {
        let mut out = Vec::new();
        encode(&mut out, b"2026-11-23T09:00:00.000000001Z", Stream::Stderr, b"a b\nc");
        encode(&mut out, b"2026-11-23T09:00:00.000000002Z", Stream::Stdout, b"");
        let lines: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 2);
        let l = parse(lines[0]).unwrap();
        assert_eq!((l.ts, l.stream, unescape(l.payload)), (&b"2026-11-23T09:00:00.000000001Z"[..], Stream::Stderr, b"a b\nc".to_vec()));
        let l = parse(lines[1]).unwrap();
        assert_eq!((l.stream, l.payload), (Stream::Stdout, &b""[..]));
        assert!(parse(b"garbage").is_none());
    }
}
