//! Size-based rotation of one instance's capture files: `current.log`, then `current.log.1`
//! (newest) to `current.log.N-1` (oldest), at most `max_files` files in all. Records never
//! span two files; a new file starts with a `herd container=ID` marker so the container a
//! record came from is always known from the file or the one before it.
//!
//! Rotation renames oldest first, so a crash between two renames leaves every record in
//! exactly one file and [`super::cursor::recover`] finds the newest records where they are.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::{self, Stream};

/// Name of the file being written.
pub const CURRENT: &str = "current.log";

/// Size-based rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the current file would grow past this many bytes.
    pub max_bytes: u64,
    /// Files kept in all, the current one included (at least 2).
    pub max_files: u32,
}

impl Default for Rotation {
    /// 16 MiB x 5: at most 80 MiB per instance, whatever the daemon writes.
    fn default() -> Self {
        Self { max_bytes: 16 << 20, max_files: 5 }
    }
}

/// A marker record's payload: `container=ID` where a container starts writing, with
/// ` rotated` at the top of a file that continues the previous one.
pub fn marker_payload(container: &str, rotated: bool) -> String {
    if rotated { format!("container={container} rotated") } else { format!("container={container}") }
}

/// Parses a marker payload into the container and whether it only continues after rotation.
pub fn parse_marker(payload: &[u8]) -> Option<(String, bool)> {
    let rest = std::str::from_utf8(payload.strip_prefix(b"container=")?).ok()?;
    match rest.split_once(' ') {
        Some((id, "rotated")) => Some((id.to_string(), true)),
        Some(_) => None,
        None => Some((rest.to_string(), false)),
    }
}

/// Path of file `n` in `dir`: 0 is the current file, 1 the newest rotated one.
pub fn file_path(dir: &Path, n: u32) -> PathBuf {
    if n == 0 { dir.join(CURRENT) } else { dir.join(format!("{CURRENT}.{n}")) }
}

/// Every existing file, oldest first, the current one last.
pub fn files_oldest_first(dir: &Path, max_files: u32) -> Vec<PathBuf> {
    (0..max_files.max(2) + 4).rev().map(|n| file_path(dir, n)).filter(|p| p.exists()).collect()
}

/// Appends records to the current file, rotating by size at record boundaries.
pub struct Writer {
    dir: PathBuf,
    rotation: Rotation,
    file: File,
    /// Bytes in the current file, written or buffered.
    size: u64,
    buf: Vec<u8>,
    /// The container writing now, named by a marker record at the top of every new file.
    container: Option<String>,
    dirty: bool,
}

/// Flush to the file once this much is buffered.
const BUF: usize = 256 << 10;

impl Writer {
    /// Opens `dir/current.log` for appending (creating `dir`).
    pub fn open(dir: &Path, rotation: Rotation) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).append(true).open(dir.join(CURRENT))?;
        let size = file.metadata()?.len();
        Ok(Self { dir: dir.into(), rotation, file, size, buf: Vec::with_capacity(BUF), container: None, dirty: false })
    }

    /// Records that `container` writes here from now on, with a start marker record.
    pub fn start_container(&mut self, container: &str) {
        self.marker(container, false);
        self.container = Some(container.into());
    }

    /// `container` continues writing here (after a restart of the agent); no marker needed.
    pub fn continue_container(&mut self, container: &str) {
        self.container = Some(container.into());
    }

    fn marker(&mut self, container: &str, rotated: bool) {
        let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let start = self.buf.len();
        record::encode(&mut self.buf, now.as_bytes(), Stream::Herd, marker_payload(container, rotated).as_bytes());
        self.size += (self.buf.len() - start) as u64;
    }

    /// Appends one whole record (ending in `\n`), rotating first if it would not fit.
    pub fn append(&mut self, record: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + record.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        if self.size == 0
            && let Some(c) = self.container.clone()
        {
            self.marker(&c, true);
        }
        self.buf.extend_from_slice(record);
        self.size += record.len() as u64;
        if self.buf.len() >= BUF {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is buffered to the file (to the page cache, not yet to the disk).
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let r = self.file.write_all(&self.buf);
            // NB: on error (e.g. ENOSPC) part of the buffer may be in the file: the caller
            // recovers from the file (which truncates a torn record) rather than retrying.
            self.buf.clear();
            r?;
            self.dirty = true;
        }
        Ok(())
    }

    /// Flushes and makes the file durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        let last = self.rotation.max_files.max(2) - 1;
        match std::fs::remove_file(file_path(&self.dir, last)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (0..last).rev() {
            match std::fs::rename(file_path(&self.dir, n), file_path(&self.dir, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.file = OpenOptions::new().create(true).append(true).open(self.dir.join(CURRENT))?;
        self.size = 0;
        // Make the renames and the new file durable before records land in it.
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation { max_bytes: 100, max_files: 3 };
        let mut w = Writer::open(dir.path(), rot).unwrap();
        w.start_container("c");
        for i in 0..40 {
            w.append(format!("record {i:03}\n").as_bytes()).unwrap();
        }
        w.sync().unwrap();
        let files = files_oldest_first(dir.path(), 3);
        assert_eq!(files.len(), 3);
        let mut all = String::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.len() <= 100, "{} is {} bytes", f.display(), text.len());
            let first = text.lines().next().unwrap();
            assert!(first.contains(" herd container=c"), "every file starts with a marker: {first}");
            all.extend(text.lines().filter(|l| l.starts_with("record")).map(|l| format!("{l}\n")));
        }
        let nums: Vec<u32> = all.lines().map(|l| l[7..].parse().unwrap()).collect();
        assert_eq!(*nums.last().unwrap(), 39);
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "contiguous, in order: {nums:?}");
    }

    #[test]
    fn a_record_larger_than_a_file_gets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path(), Rotation { max_bytes: 10, max_files: 2 }).unwrap();
        w.append(b"small\n").unwrap();
        w.append(&[b'x'; 50].iter().copied().chain([b'\n']).collect::<Vec<_>>()).unwrap();
        w.sync().unwrap();
        assert_eq!(std::fs::read(file_path(dir.path(), 1)).unwrap(), b"small\n");
        assert_eq!(std::fs::read(file_path(dir.path(), 0)).unwrap().len(), 51);
    }
}
