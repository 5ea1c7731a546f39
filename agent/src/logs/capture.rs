//! Capturing one instance's container output into its files.
//!
//! ```text
//! recover cursor from the files ─► follow Docker from `since` ─► reassemble partial lines
//!        ▲                                                          │ skip the first `skip`
//!        └──── on a write error (disk full): report, wait, retry ◄──┴─► append (rotate) ─► syslog
//! ```
//!
//! The files are the only state: nothing is remembered across attempts but what was written,
//! so a crash, a full disk and a normal restart all resume the same way.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::StreamExt;
use futures::stream::BoxStream;
use herd_api::names::InstanceRef;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cursor::{self, Cursor};
use super::record::{self, Stream};
use super::rotate::{Rotation, Writer};
use super::status::Status;
use super::syslog::{Forwarder, Message};

/// One message as the Docker API gives it with timestamps on: `TIMESTAMP SP BYTES`, where
/// `BYTES` ends in `\n` unless Docker split a long line (every [`PART`] bytes) or the line
/// was the last output and had no newline.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub bytes: Bytes,
}

/// Why following a container's output failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The container no longer exists.
    #[error("container {0} is gone")]
    Gone(String),
    #[error("reading the output of container {container} failed: {message}")]
    Read { container: String, message: String },
}

/// Where container output comes from: Docker's logs API in production ([`super::docker`]).
pub trait Source: Send + Sync + 'static {
    /// Every message of `container` stored at or after Unix second `since` (0: all), then
    /// new ones as they are written, until the container stops.
    fn follow(&self, container: &str, since: i64) -> BoxStream<'static, Result<Chunk, SourceError>>;
}

/// Docker's log copier splits lines longer than its 16 KiB buffer into parts of exactly this
/// size; the last part is shorter (or empty).
pub const PART: usize = 16 << 10;

/// Reassembles Docker's partial messages into whole lines, one buffer per stream (the two
/// streams' messages interleave). A line's parts share its first part's timestamp.
///
/// NB: Docker 20.10's `local` driver gives the last part of a split line back *without* its
/// newline, so a message without one ends the line unless it is exactly [`PART`] bytes
/// long. (A line that ends with no newline at all when the container exits is a whole line too.)
///
/// Replays (see [`Dedupe`]) can fall inside a long line: when Docker rotates its file between
/// a line's parts, its follow sends the parts again from the new file's start. So while a
/// line is pending:
/// - a message older than it (an earlier timestamp) is a replay of a line already taken: dropped;
/// - a newer one means the line was cut (its container stopped mid-line): it is emitted as it is;
/// - its own first part again starts a replay of the line: the parts that follow are held
///   while they repeat the line's parts in order and dropped once they all did; anything else
///   gives the held parts back to the line. Only a line of two parts or more whose first two
///   parts differ is judged this way (a first part, with the line's start in it, does not
///   come back inside the same line; a line of identical parts could not be told from its replay).
#[derive(Debug, Default)]
pub struct Assembler {
    pending: [Option<Pending>; 2],
}

#[derive(Debug)]
struct Pending {
    ts: Bytes,
    /// The line's parts so far, each [`PART`] bytes.
    buf: Vec<u8>,
    /// While a replay of the line is under way: the parts taken since its first part came again.
    held: Option<Vec<u8>>,
}

impl Pending {
    fn parts(&self) -> usize {
        self.buf.len() / PART
    }

    fn part(&self, i: usize) -> &[u8] {
        &self.buf[i * PART..(i + 1) * PART]
    }

    /// Gives held parts back to the line (they were not a replay after all).
    fn release(&mut self) {
        if let Some(held) = self.held.take() {
            self.buf.extend_from_slice(&held);
        }
    }

    /// Takes one more full part of the line.
    fn take(&mut self, part: &[u8]) {
        if let Some(held) = &mut self.held {
            let at = held.len() / PART;
            if held.len() < self.buf.len() && self.buf[at * PART..(at + 1) * PART] == *part {
                held.extend_from_slice(part);
                if held.len() == self.buf.len() {
                    // The whole line so far came again: a replay; drop it.
                    self.held = None;
                }
                return;
            }
            self.release();
        } else if self.parts() >= 2 && self.part(0) == part && self.part(0) != self.part(1) {
            self.held = Some(part.to_vec());
            return;
        }
        self.buf.extend_from_slice(part);
    }
}

/// A whole line: timestamp, stream, bytes without the newline.
pub type Line<'a> = (&'a [u8], Stream, &'a [u8]);

impl Assembler {
    /// Feeds one message; calls `emit` when it completes a line. Malformed messages (no
    /// timestamp) are kept whole with an empty timestamp rather than dropped.
    pub fn push<E>(&mut self, chunk: &Chunk, mut emit: impl FnMut(Line<'_>) -> Result<(), E>) -> Result<(), E> {
        let b = &chunk.bytes;
        let (ts, body) = match b.iter().position(|&c| c == b' ') {
            Some(sp) => (b.slice(..sp), &b[sp + 1..]),
            None => (Bytes::new(), &b[..]),
        };
        let slot = &mut self.pending[usize::from(chunk.stream == Stream::Stderr)];
        if let Some(p) = slot.as_mut()
            && !ts.is_empty()
            && ts != p.ts
        {
            if ts < p.ts {
                // A replay of a line taken before the pending one.
                return Ok(());
            }
            // The pending line was cut: it ends here.
            if let Some(mut p) = slot.take() {
                p.release();
                emit((&p.ts, chunk.stream, &p.buf))?;
            }
        }
        let whole = match body.strip_suffix(b"\n") {
            Some(line) => Some(line),
            None if body.len() != PART => Some(body),
            None => None,
        };
        match (whole, slot.as_mut()) {
            (Some(line), None) => emit((&ts, chunk.stream, line)),
            (Some(line), Some(_)) => {
                let Some(mut p) = slot.take() else { return Ok(()) };
                p.release();
                p.buf.extend_from_slice(line);
                emit((&p.ts, chunk.stream, &p.buf))
            }
            (None, Some(p)) => {
                p.take(body);
                Ok(())
            }
            (None, None) => {
                *slot = Some(Pending { ts, buf: body.to_vec(), held: None });
                Ok(())
            }
        }
    }

    /// Emits lines left without a newline when the container's output ended.
    pub fn finish<E>(&mut self, mut emit: impl FnMut(Line<'_>) -> Result<(), E>) -> Result<(), E> {
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            if let Some(mut p) = self.pending[i].take() {
                p.release();
                emit((&p.ts, stream, &p.buf))?;
            }
        }
        Ok(())
    }
}

/// Drops records Docker sends twice. Docker 20.10's follow re-sends the messages of its
/// current file after its own rotation (seen here: the whole new file again, after its last
/// line), so a record is a replay when its timestamp goes back in its stream, or when it
/// repeats the first record of the stream's latest timestamp (same time to the nanosecond,
/// same bytes). Each stream's timestamps come from one writer and never go back otherwise
/// (unless the host's clock is stepped back; see DESIGN.md, Logs).
#[derive(Debug, Default)]
pub struct Dedupe {
    streams: [Seen; 2],
    /// Records dropped as replays, for the log.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Seen {
    last: Vec<u8>,
    /// Hash of the first record with timestamp `last`.
    first: u64,
    /// Records with timestamp `last` taken so far.
    at_last: u64,
    /// While Docker replays: records with timestamp `last` matched again.
    replaying: Option<u64>,
}

fn hash(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

impl Dedupe {
    /// Whether a record is new (and to be written), or a replay of one already taken.
    pub fn admit(&mut self, ts: &[u8], stream: Stream, payload: &[u8]) -> bool {
        if ts.is_empty() {
            return true;
        }
        let s = &mut self.streams[usize::from(stream == Stream::Stderr)];
        let new = match ts.cmp(&s.last[..]) {
            std::cmp::Ordering::Greater => {
                s.last.clear();
                s.last.extend_from_slice(ts);
                s.first = hash(payload);
                s.at_last = 1;
                s.replaying = None;
                true
            }
            std::cmp::Ordering::Equal => match &mut s.replaying {
                Some(k) if *k < s.at_last => {
                    *k += 1;
                    false
                }
                None if hash(payload) == s.first => {
                    s.replaying = Some(1);
                    false
                }
                _ => {
                    s.replaying = None;
                    s.at_last += 1;
                    true
                }
            },
            std::cmp::Ordering::Less => {
                s.replaying = Some(0);
                false
            }
        };
        if !new {
            self.dropped += 1;
        }
        new
    }
}

/// What one capture needs besides its target.
#[derive(Clone)]
pub struct Context {
    pub source: Arc<dyn Source>,
    pub rotation: Rotation,
    pub status: Arc<Status>,
    pub forward: Option<Forwarder>,
    /// How long to wait before retrying after a write error.
    pub retry: Duration,
}

/// The container to capture and where to.
#[derive(Debug, Clone)]
pub struct Target {
    pub instance: InstanceRef,
    pub pool: String,
    pub container: String,
    /// The instance's `stdio/` folder.
    pub dir: PathBuf,
}

/// Why one capture attempt stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot write logs in {dir}")]
    Write {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Docker sent nothing for [`IDLE_RESYNC`]: follow again from the files' cursor.
    #[error("no output for a while; following again")]
    Idle,
}

/// Follow again after this long without output: a safety net against a follow that stalls
/// (Docker's follow can misbehave around its own rotation). Cheap: the cursor skips what is
/// captured, and a quiet container replays little.
const IDLE_RESYNC: Duration = Duration::from_secs(15);

/// Make records durable at least this often while output flows.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Captures `target` until its container stops, it is gone, or `shutdown`.
pub async fn run(target: Target, ctx: Context, shutdown: CancellationToken) {
    loop {
        match once(&target, &ctx, &shutdown).await {
            Ok(()) => {
                debug!(instance = %target.instance, container = %target.container, "capture ended");
                return;
            }
            Err(CaptureError::Idle) => continue,
            Err(CaptureError::Source(SourceError::Gone(_))) => {
                ctx.status.clear(&target.instance);
                return;
            }
            Err(CaptureError::Write { dir, source }) => {
                let full = matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded);
                warn!(instance = %target.instance, dir = %dir.display(), error = %source, full, "cannot write logs; will retry");
                ctx.status.set(&target.instance, &dir, &source);
            }
            Err(e) => warn!(instance = %target.instance, error = %e, "log capture failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.retry) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn once(t: &Target, ctx: &Context, shutdown: &CancellationToken) -> Result<(), CaptureError> {
    let write_err = |source| CaptureError::Write { dir: t.dir.clone(), source };
    let (dir, max_files) = (t.dir.clone(), ctx.rotation.max_files);
    let found = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        cursor::recover(&dir, max_files)
    })
    .await
    .map_err(|e| write_err(io::Error::other(e)))?
    .map_err(write_err)?;
    let mut w = Writer::open(&t.dir, ctx.rotation).map_err(write_err)?;
    let cursor = if found.container.as_deref() == Some(t.container.as_str()) {
        w.continue_container(&t.container);
        found
    } else {
        w.start_container(&t.container);
        Cursor::default()
    };
    debug!(instance = %t.instance, container = %t.container, since = cursor.since, have = cursor.expect.len(), "capturing");
    let mut expect: std::collections::VecDeque<_> = cursor.expect.into();
    let mut missing = 0u64;
    let mut stream = ctx.source.follow(&t.container, cursor.since);
    let mut asm = Assembler::default();
    let mut dedupe = Dedupe::default();
    let mut rec = Vec::with_capacity(4096);
    let mut synced = Instant::now();
    let mut write = |(ts, stream, payload): Line<'_>, w: &mut Writer| -> io::Result<()> {
        if !dedupe.admit(ts, stream, payload) {
            crate::metrics::get().log_dropped("replayed", Some(payload.len()));
            if dedupe.dropped.is_power_of_two() {
                info!(instance = %t.instance, dropped = dedupe.dropped, "Docker sent records again; dropped the copies");
            }
            return Ok(());
        }
        // Records of ours that Docker no longer has come before this one: skip past them.
        while expect.front().is_some_and(|(e, _)| e.as_slice() < ts) {
            expect.pop_front();
            missing += 1;
            crate::metrics::get().log_dropped("lost", None);
            if missing == 1 {
                warn!(instance = %t.instance, "Docker's copy no longer reaches back to the last captured line: lines written while the agent was away may be lost (raise --docker-log-max-size)");
            }
        }
        if expect.front().is_some_and(|(e, s)| e.as_slice() == ts && *s == stream) {
            expect.pop_front();
            return Ok(());
        }
        rec.clear();
        record::encode(&mut rec, ts, stream, payload);
        w.append(&rec)?;
        crate::metrics::get().log_captured(rec.len());
        if let Some(f) = &ctx.forward {
            f.send(Message { instance: &t.instance, pool: &t.pool, ts, stream, payload });
        }
        Ok(())
    };
    loop {
        // NB: flush only when Docker has nothing more ready, so a busy stream is written in
        // large blocks and an idle one is readable at once.
        let item = match stream.next().now_or_never() {
            Some(item) => item,
            None => {
                w.flush().map_err(write_err)?;
                if synced.elapsed() >= SYNC_EVERY {
                    w.sync().map_err(write_err)?;
                    synced = Instant::now();
                }
                ctx.status.clear(&t.instance);
                tokio::select! {
                    item = stream.next() => item,
                    _ = tokio::time::sleep(IDLE_RESYNC) => {
                        w.sync().map_err(write_err)?;
                        return Err(CaptureError::Idle);
                    }
                    _ = shutdown.cancelled() => {
                        w.sync().map_err(write_err)?;
                        return Ok(());
                    }
                }
            }
        };
        match item {
            None => {
                asm.finish(|line| write(line, &mut w)).map_err(write_err)?;
                w.sync().map_err(write_err)?;
                return Ok(());
            }
            Some(Err(e)) => {
                w.sync().map_err(write_err)?;
                return Err(e.into());
            }
            Some(Ok(chunk)) => asm.push(&chunk, |line| write(line, &mut w)).map_err(write_err)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn chunk(stream: Stream, s: &[u8]) -> Chunk {
        Chunk { stream, bytes: Bytes::copy_from_slice(s) }
    }

    #[test]
    fn partial_messages_become_one_line_per_stream() {
        let mut a = Assembler::default();
        let mut got: Vec<(String, Stream, Vec<u8>)> = Vec::new();
        let chunks = [
            chunk(Stream::Stdout, &[&b"T1 "[..], &[b'a'; PART]].concat()),
            chunk(Stream::Stderr, b"T2 err\n"),
            chunk(Stream::Stdout, &[&b"T1 "[..], &[b'b'; PART]].concat()),
            // The last part, as the local driver gives it back: without its newline.
            chunk(Stream::Stdout, b"T1 cc"),
            chunk(Stream::Stdout, b"T3 \xff\x00bin\n"),
            chunk(Stream::Stderr, &[&b"T4 "[..], &[b'd'; PART]].concat()),
            // A line of exactly two parts: its newline comes as an empty last part.
            chunk(Stream::Stderr, &[&b"T4 "[..], &[b'd'; PART]].concat()),
            chunk(Stream::Stderr, b"T4 "),
            chunk(Stream::Stderr, b"T5 tail-without-newline"),
            chunk(Stream::Stdout, &[&b"T6 "[..], &[b'e'; PART]].concat()),
        ];
        for c in &chunks {
            a.push::<()>(c, |(ts, s, p)| {
                got.push((String::from_utf8_lossy(ts).into(), s, p.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        a.finish::<()>(|(ts, s, p)| {
            got.push((String::from_utf8_lossy(ts).into(), s, p.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("T2".into(), Stream::Stderr, b"err".to_vec()),
                ("T1".into(), Stream::Stdout, [vec![b'a'; PART], vec![b'b'; PART], b"cc".to_vec()].concat()),
                ("T3".into(), Stream::Stdout, b"\xff\x00bin".to_vec()),
                ("T4".into(), Stream::Stderr, vec![b'd'; 2 * PART]),
                ("T5".into(), Stream::Stderr, b"tail-without-newline".to_vec()),
                // Output that ended in the middle of a long line.
                ("T6".into(), Stream::Stdout, vec![b'e'; PART]),
            ]
        );
    }

    fn assemble(chunks: &[Chunk]) -> Vec<(String, Vec<u8>)> {
        let mut a = Assembler::default();
        let mut got = Vec::new();
        for c in chunks {
            a.push::<()>(c, |(ts, _, p)| {
                got.push((String::from_utf8_lossy(ts).into_owned(), p.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        a.finish::<()>(|(ts, _, p)| {
            got.push((String::from_utf8_lossy(ts).into_owned(), p.to_vec()));
            Ok(())
        })
        .unwrap();
        got
    }

    /// A full part of a line at `ts`, filled with `fill` after `head`.
    fn part(ts: &str, head: &[u8], fill: u8) -> Chunk {
        let mut body = head.to_vec();
        body.resize(PART, fill);
        chunk(Stream::Stdout, &[format!("{ts} ").as_bytes(), &body].concat())
    }

    #[test]
    fn a_replay_inside_a_long_line_is_dropped_and_repeated_parts_are_kept() {
        let (h, l) = (part("T5", b"long 1450 ", b'L'), part("T5", b"", b'L'));
        let body = |c: &Chunk| c.bytes[3..].to_vec();
        // As seen: Docker rotated between the parts of a line and sent its first three parts
        // again before the rest (the line came out 7 parts long).
        let replayed = [
            chunk(Stream::Stdout, b"T1 before\n"),
            h.clone(),
            l.clone(),
            l.clone(),
            // The replay: an older whole line, then the line's parts again.
            chunk(Stream::Stdout, b"T1 before\n"),
            h.clone(),
            l.clone(),
            l.clone(),
            l.clone(),
            chunk(Stream::Stdout, b"T5 tail"),
        ];
        let line = [body(&h), body(&l), body(&l), body(&l), b"tail".to_vec()].concat();
        assert_eq!(assemble(&replayed), vec![("T1".into(), b"before".to_vec()), ("T5".into(), line.clone())]);
        // The same line without a replay, and lines whose parts repeat, come out whole.
        assert_eq!(assemble(&[h.clone(), l.clone(), l.clone(), l.clone(), chunk(Stream::Stdout, b"T5 tail")]), vec![("T5".into(), line)]);
        let a = part("T6", b"", b'a');
        assert_eq!(assemble(&[a.clone(), a.clone(), a.clone(), a.clone()]), vec![("T6".into(), vec![b'a'; 4 * PART])]);
        // The first part again but not followed by the rest: not a replay, nothing lost.
        let x = part("T5", b"x", b'x');
        assert_eq!(
            assemble(&[h.clone(), l.clone(), h.clone(), x.clone(), chunk(Stream::Stdout, b"T5 end")]),
            vec![("T5".into(), [body(&h), body(&l), body(&h), body(&x), b"end".to_vec()].concat())]
        );
        // A newer record while a line is pending: the line was cut and ends there.
        assert_eq!(
            assemble(&[h.clone(), chunk(Stream::Stdout, b"T7 next\n")]),
            vec![("T5".into(), body(&h)), ("T7".into(), b"next".to_vec())]
        );
    }

    #[test]
    fn replays_are_dropped_and_equal_timestamps_kept() {
        let mut d = Dedupe::default();
        let seq: &[(&[u8], Stream, &[u8], bool)] = &[
            (b"T1", Stream::Stdout, b"a", true),
            (b"T2", Stream::Stdout, b"b", true),
            (b"T2", Stream::Stdout, b"c", true),
            (b"T1", Stream::Stderr, b"a", true),
            // Docker sends stdout again from T1.
            (b"T1", Stream::Stdout, b"a", false),
            (b"T2", Stream::Stdout, b"b", false),
            (b"T2", Stream::Stdout, b"c", false),
            // Then a new record with the same timestamp, then newer ones.
            (b"T2", Stream::Stdout, b"d", true),
            (b"T3", Stream::Stdout, b"e", true),
            (b"T2", Stream::Stderr, b"f", true),
            // Docker sends again from exactly the latest timestamp: same time, same bytes.
            (b"T3", Stream::Stdout, b"e", false),
            (b"T3", Stream::Stdout, b"g", true),
        ];
        for (i, (ts, s, p, want)) in seq.iter().enumerate() {
            assert_eq!(d.admit(ts, *s, p), *want, "record {i}");
        }
        assert_eq!(d.dropped, 4);
    }

    /// Replays a fixed log from `since`, as Docker does, then (with `replay`) sends its last
    /// `replay` messages again, as Docker 20.10 does after rotating its own file, then ends.
    struct Fake {
        log: Vec<(String, Stream, Vec<u8>)>,
        calls: Mutex<Vec<i64>>,
        replay: usize,
        /// Messages before this index were rotated away by Docker.
        from: usize,
    }

    impl Source for Fake {
        fn follow(&self, _container: &str, since: i64) -> BoxStream<'static, Result<Chunk, SourceError>> {
            self.calls.lock().unwrap().push(since);
            let since_t = std::time::UNIX_EPOCH + Duration::from_secs(since as u64);
            let items: Vec<_> = self
                .log
                .iter()
                .skip(self.from)
                .filter(|(ts, _, _)| cursor::parse_ts(ts.as_bytes()).unwrap() >= since_t)
                .map(|(ts, s, b)| {
                    let mut bytes = format!("{ts} ").into_bytes();
                    bytes.extend_from_slice(b);
                    Chunk { stream: *s, bytes: bytes.into() }
                })
                .collect::<Vec<_>>();
            // Docker's files hold whole messages, and its replays start at a file's start.
            let mut k = items.len().saturating_sub(self.replay);
            while k > 0 && k < items.len() && !items[k - 1].bytes.ends_with(b"\n") && items[k - 1].bytes.len() > PART {
                k -= 1;
            }
            let again: Vec<_> = items[k..].to_vec();
            futures::stream::iter(items.into_iter().chain(again).map(Ok)).boxed()
        }
    }

    fn ts(s: u64, ns: u32) -> String {
        humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + Duration::new(s, ns)).to_string()
    }

    async fn capture(fake: Arc<Fake>, dir: &std::path::Path, rotation: Rotation) {
        let ctx = Context { source: fake, rotation, status: Arc::new(Status::default()), forward: None, retry: Duration::from_millis(10) };
        let target = Target { instance: InstanceRef::new("t", "c", herd_api::Role::Datanode, 0), pool: "datanode".into(), container: "c1".into(), dir: dir.into() };
        run(target, ctx, CancellationToken::new()).await;
    }

    fn payloads(dir: &std::path::Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for f in super::super::rotate::files_oldest_first(dir, 10) {
            for line in std::fs::read(f).unwrap().split_inclusive(|&b| b == b'\n') {
                let r = record::parse(line).unwrap();
                if r.stream != Stream::Herd {
                    out.push(record::unescape(r.payload));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn resuming_after_a_crash_neither_loses_nor_doubles() {
        let mut log = Vec::new();
        for i in 0..300u32 {
            // Ten lines per second, a long split line every 50, binary bytes in some.
            let t = ts(1000 + u64::from(i / 10), (i % 10) * 1000);
            if i % 50 == 7 {
                log.push((t.clone(), Stream::Stdout, format!("{i:05} ").into_bytes().into_iter().chain(vec![b'L'; PART - 6]).collect()));
                log.push((t.clone(), Stream::Stdout, vec![b'L'; PART]));
                log.push((t, Stream::Stdout, b"end".to_vec()));
            } else {
                log.push((t, Stream::Stderr, [format!("{i:05} ").as_bytes(), b"\xff\n"].concat()));
            }
        }
        let expected: Vec<Vec<u8>> = {
            let dir = tempfile::tempdir().unwrap();
            let fake = Arc::new(Fake { log: log.clone(), calls: Mutex::new(vec![]), replay: 0, from: 0 });
            capture(fake, dir.path(), Rotation::default()).await;
            payloads(dir.path())
        };
        assert_eq!(expected.len(), 300);
        assert!(expected[7].len() > 32768 && expected[7].ends_with(b"end"));
        // A crash at every point: the files hold a prefix of the output, possibly torn, then the
        // agent starts again and must end with exactly the whole output.
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake { log: log.clone(), calls: Mutex::new(vec![]), replay: 0, from: 0 });
        capture(fake, dir.path(), Rotation::default()).await;
        let full = std::fs::read(dir.path().join("current.log")).unwrap();
        for cut in (0..full.len()).step_by(997).chain([full.len()]) {
            let d2 = tempfile::tempdir().unwrap();
            std::fs::write(d2.path().join("current.log"), &full[..cut]).unwrap();
            // ... and Docker sends its last messages twice.
            let fake = Arc::new(Fake { log: log.clone(), calls: Mutex::new(vec![]), replay: cut % 300, from: 0 });
            capture(fake.clone(), d2.path(), Rotation { max_bytes: 50_000, max_files: 50 }).await;
            let got = payloads(d2.path());
            // NB: not assert_eq! on the lines: a failure would print megabytes.
            let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
            assert!(got.len() == expected.len() && first_diff.is_none(), "after a crash at byte {cut}: {} lines, first difference at {first_diff:?}", got.len());
        }
    }

    #[tokio::test]
    async fn when_docker_no_longer_holds_the_last_lines_new_ones_are_not_skipped() {
        let log: Vec<_> = (0..300u32).map(|i| (ts(1000 + u64::from(i / 10), i % 10), Stream::Stdout, format!("{i}\n").into_bytes())).collect();
        let line = |i: u32| format!("{i}").into_bytes();
        for (docker_from, want) in [
            // Docker still holds part of what the files end with: nothing lost, nothing doubled.
            (195, (0..300).map(line).collect::<Vec<_>>()),
            // Docker rotated away lines never captured: those are lost, but no later one is.
            (250, (0..200).chain(250..300).map(line).collect()),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let first = Arc::new(Fake { log: log[..200].to_vec(), calls: Mutex::new(vec![]), replay: 0, from: 0 });
            capture(first, dir.path(), Rotation::default()).await;
            let later = Arc::new(Fake { log: log.clone(), calls: Mutex::new(vec![]), replay: 0, from: docker_from });
            capture(later, dir.path(), Rotation::default()).await;
            let got = payloads(dir.path());
            assert!(got == want, "Docker from {docker_from}: {} lines, first difference at {:?}", got.len(), got.iter().zip(&want).position(|(a, b)| a != b));
        }
    }
}
