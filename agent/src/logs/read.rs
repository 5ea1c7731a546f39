//! Reading an instance's captured records back: all of them, the last N, those since a
//! time, one stream's, and following new ones across rotation (like `tail -F`: the open file
//! is read to its end before the new `current.log` is opened).
//!
//! Blocking file I/O: run it on a blocking thread. Lines go to `emit` as they are read, so
//! nothing is held whole but the last N records of a `tail`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use herd_api::FieldError;
use herd_api::logs::{LogQuery, LogStream};

use super::record::{self, Stream};
use super::rotate::file_path;

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Keep reading new records until the reader is cancelled.
    pub follow: bool,
    /// Only records at or after this timestamp (RFC 3339, nine fraction digits, UTC).
    pub since: Option<String>,
    /// Only the last N records (before following).
    pub tail: Option<usize>,
    /// Only this stream's records.
    pub stream: Option<Stream>,
}

impl Query {
    /// Checks the HTTP query parameters; `now` resolves `since=DURATION`.
    pub fn parse(
        follow: Option<&str>,
        since: Option<&str>,
        tail: Option<&str>,
        stream: Option<&str>,
        now: SystemTime,
    ) -> Result<Self, FieldError> {
        let q = LogQuery::parse(follow, since, tail, stream)?;
        Ok(Query {
            follow: q.follow,
            since: q.since.map(|s| humantime::format_rfc3339_nanos(s.resolve(now)).to_string()),
            tail: q.tail,
            stream: q.stream.map(|s| match s {
                LogStream::Stdout => Stream::Stdout,
                LogStream::Stderr => Stream::Stderr,
            }),
        })
    }

    fn matches(&self, line: &[u8]) -> bool {
        let Some(r) = record::parse(line) else { return false };
        r.stream != Stream::Herd
            && self.stream.is_none_or(|s| s == r.stream)
            && self.since.as_ref().is_none_or(|s| r.ts >= s.as_bytes())
    }
}

/// How often a follower looks for new records.
const POLL: Duration = Duration::from_millis(100);

/// Splits a file into lines as it grows, keeping a torn last line until it is complete.
struct Lines {
    file: File,
    carry: Vec<u8>,
    block: Vec<u8>,
}

impl Lines {
    fn new(file: File) -> Self {
        Self { file, carry: Vec::new(), block: vec![0; 64 << 10] }
    }

    /// Reads what is there now; calls `f` per complete line (with its `\n`). Returns false
    /// when `f` asked to stop.
    fn pump(&mut self, f: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<(bool, usize)> {
        let mut total = 0;
        loop {
            let n = self.file.read(&mut self.block)?;
            if n == 0 {
                return Ok((true, total));
            }
            total += n;
            let data = &self.block[..n];
            let mut start = 0;
            for (i, &b) in data.iter().enumerate() {
                if b == b'\n' {
                    let go = if self.carry.is_empty() {
                        f(&data[start..=i])
                    } else {
                        self.carry.extend_from_slice(&data[start..=i]);
                        let line = std::mem::take(&mut self.carry);
                        f(&line)
                    };
                    if !go {
                        return Ok((false, total));
                    }
                    start = i + 1;
                }
            }
            self.carry.extend_from_slice(&data[start..]);
        }
    }
}

/// Opens every file at one moment: oldest first, `current.log` last with its inode.
fn open_all(dir: &Path, max_files: u32) -> io::Result<Vec<File>> {
    for _ in 0..10 {
        let current = match File::open(file_path(dir, 0)) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for n in (1..max_files.max(2) + 4).rev() {
            if let Ok(f) = File::open(file_path(dir, n)) {
                files.push(f);
            }
        }
        let ino = |f: &File| f.metadata().map(|m| m.ino()).ok();
        let now = std::fs::metadata(file_path(dir, 0)).map(|m| m.ino()).ok();
        // NB: a rotation between the opens would show the same file twice or skip one.
        if current.as_ref().and_then(ino) == now {
            files.extend(current);
            return Ok(files);
        }
    }
    Err(io::Error::other("the log files kept rotating while being opened"))
}

/// Reads `dir`'s records for `q`, calling `emit` per record line (with its `\n`) until
/// it returns false or the records end; with `follow`, `idle` is called whenever the reader
/// has caught up (to flush what it batched) and stops it by returning false.
pub fn read(dir: &Path, max_files: u32, q: &Query, emit: &mut dyn FnMut(&[u8]) -> bool, idle: &mut dyn FnMut() -> bool) -> io::Result<()> {
    let mut files = open_all(dir, max_files)?;
    let current = files.pop();
    let mut tail: VecDeque<Vec<u8>> = VecDeque::new();
    let mut go = true;
    {
        let mut sink = |line: &[u8]| -> bool {
            if !q.matches(line) {
                return true;
            }
            match q.tail {
                Some(0) => true,
                Some(n) => {
                    if tail.len() == n {
                        tail.pop_front();
                    }
                    tail.push_back(line.to_vec());
                    true
                }
                None => emit(line),
            }
        };
        for f in files {
            let (more, _) = Lines::new(f).pump(&mut sink)?;
            if !more {
                return Ok(());
            }
        }
    }
    let Some(current) = current else {
        for line in tail {
            if !emit(&line) {
                return Ok(());
            }
        }
        return follow_from(dir, None, q, emit, idle);
    };
    let mut lines = Lines::new(current);
    if q.tail.is_some() {
        let (more, _) = lines.pump(&mut |line: &[u8]| {
            if q.matches(line) {
                if tail.len() == q.tail.unwrap_or(0) {
                    tail.pop_front();
                }
                if q.tail != Some(0) {
                    tail.push_back(line.to_vec());
                }
            }
            true
        })?;
        go = more;
        for line in tail {
            if !emit(&line) {
                return Ok(());
            }
        }
    }
    if !go {
        return Ok(());
    }
    follow_from(dir, Some(lines), q, emit, idle)
}

/// Emits the rest of `open` (and with `follow`, everything written after it, across rotation).
fn follow_from(
    dir: &Path,
    mut open: Option<Lines>,
    q: &Query,
    emit: &mut dyn FnMut(&[u8]) -> bool,
    idle: &mut dyn FnMut() -> bool,
) -> io::Result<()> {
    let mut sink = |line: &[u8]| !q.matches(line) || emit(line);
    loop {
        if let Some(lines) = open.as_mut() {
            let (more, n) = lines.pump(&mut sink)?;
            if !more {
                return Ok(());
            }
            if n > 0 {
                continue;
            }
        }
        if !q.follow || !idle() {
            return Ok(());
        }
        // At the end of the open file: has `current.log` become another file?
        let now = std::fs::metadata(file_path(dir, 0)).map(|m| m.ino()).ok();
        let mine = open.as_ref().and_then(|l| l.file.metadata().ok()).map(|m| m.ino());
        if now.is_some() && now != mine {
            if let Some(lines) = open.as_mut() {
                // Whatever was written to the old file before it was renamed.
                let (more, _) = lines.pump(&mut sink)?;
                if !more {
                    return Ok(());
                }
            }
            match File::open(file_path(dir, 0)) {
                Ok(f) => open = Some(Lines::new(f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::rotate::{Rotation, Writer};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    fn ts(i: u64) -> String {
        humantime::format_rfc3339_nanos(SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i)).to_string()
    }

    fn write(w: &mut Writer, from: u64, to: u64) {
        for i in from..to {
            let mut r = Vec::new();
            let stream = if i % 3 == 0 { Stream::Stderr } else { Stream::Stdout };
            record::encode(&mut r, ts(i).as_bytes(), stream, format!("line {i}").as_bytes());
            w.append(&r).unwrap();
        }
        w.flush().unwrap();
    }

    fn nums(lines: &[Vec<u8>]) -> Vec<u64> {
        lines.iter().map(|l| String::from_utf8_lossy(record::parse(l).unwrap().payload)[5..].parse().unwrap()).collect()
    }

    fn collect(dir: &Path, q: &Query) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        read(dir, 100, q, &mut |l| {
            out.push(l.to_vec());
            true
        }, &mut || false)
        .unwrap();
        out
    }

    #[test]
    fn all_tail_since_and_stream_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path(), Rotation { max_bytes: 500, max_files: 100 }).unwrap();
        w.start_container("c");
        write(&mut w, 0, 100);
        assert!(file_path(dir.path(), 3).exists(), "rotated several times");
        assert_eq!(nums(&collect(dir.path(), &Query::default())), (0..100).collect::<Vec<_>>());
        let q = Query { tail: Some(5), ..Default::default() };
        assert_eq!(nums(&collect(dir.path(), &q)), (95..100).collect::<Vec<_>>());
        let q = Query { since: Some(ts(90)), stream: Some(Stream::Stderr), ..Default::default() };
        assert_eq!(nums(&collect(dir.path(), &q)), vec![90, 93, 96, 99]);
        let q = Query { tail: Some(0), ..Default::default() };
        assert!(collect(dir.path(), &q).is_empty());
    }

    #[test]
    fn following_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path(), Rotation { max_bytes: 400, max_files: 3 }).unwrap();
        w.start_container("c");
        write(&mut w, 0, 3);
        let got = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (g, d, p) = (got.clone(), done.clone(), dir.path().to_path_buf());
        let reader = std::thread::spawn(move || {
            let q = Query { follow: true, tail: Some(1), ..Default::default() };
            read(&p, 3, &q, &mut |l| {
                g.lock().unwrap().push(l.to_vec());
                true
            }, &mut || !d.load(Ordering::SeqCst))
            .unwrap();
        });
        while got.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Written slowly enough that the follower sees each file before it is rotated away.
        for i in 3..40 {
            write(&mut w, i, i + 1);
            std::thread::sleep(Duration::from_millis(30));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.lock().unwrap().len() < 38 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap();
        assert_eq!(nums(&got.lock().unwrap()), (2..40).collect::<Vec<_>>());
    }

    #[test]
    fn since_a_duration_is_resolved_on_this_host() {
        let now = SystemTime::now();
        let q = Query::parse(Some("true"), Some("10m"), Some("5"), Some("stderr"), now).unwrap();
        assert!(q.follow && q.tail == Some(5) && q.stream == Some(Stream::Stderr));
        assert_eq!(q.since, Some(humantime::format_rfc3339_nanos(now - Duration::from_secs(600)).to_string()));
        assert_eq!(Query::parse(None, None, Some("x"), None, now).unwrap_err().field, "tail");
    }
}
