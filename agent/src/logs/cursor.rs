//! Where to resume capture, derived only from what is in the files, so it is exactly as
//! durable as the records themselves and survives `kill -9` and rotation.
//!
//! Docker's `since` keeps every stored message whose timestamp is at or after it, in stored
//! order, and the files hold a prefix of that same order. So with `since` = the last
//! record's second, the records already captured are the first records Docker replays: the
//! cursor lists them (`expect`: timestamp and stream of each of the file's records of this
//! container at or after `since`, in file order) and capture skips the replayed records that
//! match them. If Docker's bounded copy no longer holds some of them (the agent was down too
//! long), the replay starts later: capture notices the mismatch instead of skipping new lines.
//! stdout and stderr are stamped separately and may be stored a little out of timestamp
//! order, so the backward scan goes on until a record more than [`DISORDER`] older.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::{self, Stream};
use super::rotate::{file_path, parse_marker};

/// How far out of timestamp order two stored records may be.
const DISORDER: Duration = Duration::from_secs(1);

/// Where to resume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The container whose records end the files; `None` when there are none.
    pub container: Option<String>,
    /// Docker `since` (Unix seconds; 0 for everything).
    pub since: i64,
    /// The records at or after `since` already in the files, in file order: Docker replays
    /// them first.
    pub expect: Vec<(Vec<u8>, Stream)>,
}

impl Cursor {
    /// The cursor for `container`: this one if it is the container that wrote last,
    /// otherwise from the container's first line.
    pub fn for_container(self, container: &str) -> Cursor {
        if self.container.as_deref() == Some(container) {
            self
        } else {
            Cursor { container: Some(container.into()), since: 0, expect: Vec::new() }
        }
    }
}

/// Parses a record timestamp.
pub fn parse_ts(ts: &[u8]) -> Option<SystemTime> {
    humantime::parse_rfc3339(std::str::from_utf8(ts).ok()?).ok()
}

/// Truncates a torn trailing record of the current file, then computes the cursor.
pub fn recover(dir: &Path, max_files: u32) -> io::Result<Cursor> {
    truncate_torn(&file_path(dir, 0))?;
    let files: Vec<PathBuf> = (0..max_files.max(2) + 4).map(|n| file_path(dir, n)).filter(|p| p.exists()).collect();
    let mut cursor = Cursor::default();
    let mut since_t: Option<SystemTime> = None;
    let mut counting = true;
    let mut expect = Vec::new();
    let done = |mut cursor: Cursor, mut expect: Vec<(Vec<u8>, Stream)>| {
        expect.reverse();
        cursor.expect = expect;
        Ok(cursor)
    };
    for path in files {
        let mut lines = RevLines::open(&path)?;
        while let Some(line) = lines.next_line()? {
            let Some(rec) = record::parse(&line) else { continue };
            if rec.stream == Stream::Herd {
                let Some((id, rotated)) = parse_marker(rec.payload) else { continue };
                match &cursor.container {
                    None => cursor.container = Some(id),
                    Some(c) if *c != id => return done(cursor, expect),
                    Some(_) => {}
                }
                // Before a start marker, the records are another container's.
                if !rotated {
                    return done(cursor, expect);
                }
                continue;
            }
            let Some(ts) = parse_ts(rec.ts) else { continue };
            let since = *since_t.get_or_insert_with(|| {
                let secs = ts.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                cursor.since = secs as i64;
                UNIX_EPOCH + Duration::from_secs(secs)
            });
            if counting {
                if ts >= since {
                    expect.push((rec.ts.to_vec(), rec.stream));
                } else if ts + DISORDER < since {
                    counting = false;
                }
            }
            if !counting && cursor.container.is_some() {
                return done(cursor, expect);
            }
        }
    }
    done(cursor, expect)
}

/// Cuts a file back to its last complete record (after its last `\n`).
fn truncate_torn(path: &Path) -> io::Result<()> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let mut end = len;
    let mut block = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                f.set_len(keep)?;
                f.sync_all()?;
            }
            return Ok(());
        }
        end = start;
    }
    if len > 0 {
        f.set_len(0)?;
        f.sync_all()?;
    }
    Ok(())
}

/// A file's lines from last to first, without their `\n`.
pub struct RevLines {
    file: File,
    /// Bytes before `buf` not read yet.
    pos: u64,
    buf: Vec<u8>,
    done: bool,
}

impl RevLines {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut me = Self { file, pos: len, buf: Vec::new(), done: len == 0 };
        if len > 0 {
            me.fill()?;
            if me.buf.last() == Some(&b'\n') {
                me.buf.pop();
            }
        }
        Ok(me)
    }

    fn fill(&mut self) -> io::Result<()> {
        let start = self.pos.saturating_sub(64 << 10);
        let mut block = vec![0u8; (self.pos - start) as usize];
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut block)?;
        block.extend_from_slice(&self.buf);
        self.buf = block;
        self.pos = start;
        Ok(())
    }

    /// The previous line, or `None` at the start of the file.
    pub fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(i) = self.buf.iter().rposition(|&b| b == b'\n') {
                let line = self.buf.split_off(i + 1);
                self.buf.pop();
                return Ok(Some(line));
            }
            if self.pos == 0 {
                self.done = true;
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            self.fill()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::encode;
    use crate::logs::rotate::{Rotation, Writer};

    fn ts(s: u64, ns: u32) -> Vec<u8> {
        humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::new(s, ns)).to_string().into_bytes()
    }

    fn rec(t: &[u8], stream: Stream, p: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode(&mut v, t, stream, p.as_bytes());
        v
    }

    #[test]
    fn counts_records_of_the_last_second_and_truncates_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path(), Rotation::default()).unwrap();
        w.start_container("c1");
        for (s, ns) in [(100, 5), (101, 0), (101, 7), (101, 7), (102, 1), (102, 1), (102, 3)] {
            w.append(&rec(&ts(s, ns), Stream::Stdout, "x")).unwrap();
        }
        // stderr stamped a little earlier but stored later.
        w.append(&rec(&ts(101, 999_999_999), Stream::Stderr, "late")).unwrap();
        w.sync().unwrap();
        let mut f = OpenOptions::new().append(true).open(file_path(dir.path(), 0)).unwrap();
        std::io::Write::write_all(&mut f, b"2026-01-01T00:00:00.000000000Z stdout torn wi").unwrap();
        let c = recover(dir.path(), 5).unwrap();
        // Every record at or after second 101, the one stored out of order included.
        assert_eq!((c.container.as_deref(), c.since, c.expect.len()), (Some("c1"), 101, 7));
        assert_eq!(c.expect[0], (ts(101, 0), Stream::Stdout));
        assert_eq!(c.expect[6], (ts(101, 999_999_999), Stream::Stderr));
        let text = std::fs::read_to_string(file_path(dir.path(), 0)).unwrap();
        assert!(text.ends_with("late\n"), "torn record cut: {text:?}");
    }

    #[test]
    fn survives_rotation_and_stops_at_another_container() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation { max_bytes: 200, max_files: 5 };
        let mut w = Writer::open(dir.path(), rot).unwrap();
        w.start_container("old");
        w.append(&rec(&ts(50, 0), Stream::Stdout, "old")).unwrap();
        w.start_container("new");
        for i in 0..3 {
            w.append(&rec(&ts(50, i), Stream::Stdout, "new")).unwrap();
        }
        w.sync().unwrap();
        // Rotation happened: the current file starts with the marker and holds 1 record.
        assert!(file_path(dir.path(), 1).exists());
        let c = recover(dir.path(), 5).unwrap();
        assert_eq!((c.container.as_deref(), c.since, c.expect.len()), (Some("new"), 50, 3));
        assert_eq!(c.clone().for_container("other"), Cursor { container: Some("other".into()), since: 0, expect: vec![] });
        assert_eq!(c.clone().for_container("new"), c);
    }

    #[test]
    fn empty_folder_means_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recover(dir.path(), 5).unwrap(), Cursor::default());
    }

    #[test]
    fn reverse_lines_cross_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let long = "y".repeat(200_000);
        std::fs::write(&p, format!("a\n{long}\nb\n")).unwrap();
        let mut r = RevLines::open(&p).unwrap();
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push(String::from_utf8(l).unwrap());
        }
        assert_eq!(got, vec!["b".to_string(), long, "a".to_string()]);
    }
}
