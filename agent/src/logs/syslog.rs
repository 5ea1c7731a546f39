//! Optional forwarding of captured lines to a syslog collector (RFC 5424), over UDP
//! (RFC 5426, one message per datagram) or TCP (RFC 6587 octet counting), so a central
//! collector still tells containers apart:
//!
//! ```text
//! <14>1 2026-11-23T09:00:00.123456Z host-7 datanode-3 - stdout [herd@32473 tenant="acme" cluster="prod" pool="datanode"] BOM line
//! ```
//!
//! Forwarding never slows capture down: messages go through a bounded queue and are dropped
//! (and counted) when the collector cannot keep up; the files stay the complete record.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use herd_api::names::InstanceRef;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use super::record::Stream;

/// Where to forward: `udp://HOST:PORT` or `tcp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tcp: bool,
    /// `HOST:PORT`.
    pub addr: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (tcp, rest) = if let Some(r) = s.strip_prefix("udp://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (true, r)
        } else {
            return Err(format!("`{s}` is not udp://HOST:PORT or tcp://HOST:PORT"));
        };
        let rest = rest.trim_end_matches('/');
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(Target { tcp, addr: rest.to_string() })
            }
            _ => Err(format!("`{s}` needs a host and a port, e.g. udp://10.0.0.9:514")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", if self.tcp { "tcp" } else { "udp" }, self.addr)
    }
}

/// One captured line on its way out.
pub struct Message<'a> {
    pub instance: &'a InstanceRef,
    pub pool: &'a str,
    /// Docker's timestamp (RFC 3339, nine fraction digits).
    pub ts: &'a [u8],
    pub stream: Stream,
    pub payload: &'a [u8],
}

/// The sending half, cloned into every capture.
#[derive(Clone)]
pub struct Forwarder {
    host: String,
    tx: mpsc::Sender<Vec<u8>>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Messages waiting for the collector before new ones are dropped.
const QUEUE: usize = 8192;
/// The largest payload put in one message (UDP datagrams cannot carry much more).
const MAX_PAYLOAD: usize = 60 << 10;

impl Forwarder {
    /// Starts the sender task for `target`; it stops with `shutdown`.
    pub fn start(target: Target, host: String, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let span = info_span!("syslog", target = %target);
        tokio::spawn(send_loop(target, rx, shutdown).instrument(span));
        Self { host, tx, dropped: Default::default() }
    }

    /// Queues one line; drops it when the queue is full.
    pub fn send(&self, m: Message<'_>) {
        let frame = format(&self.host, &m);
        if self.tx.try_send(frame).is_err() {
            crate::metrics::get().log_dropped("forward", Some(m.payload.len()));
            let n = self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n.is_power_of_two() {
                warn!(dropped = n + 1, "syslog collector too slow or unreachable; dropping forwarded lines (the files keep them)");
            }
        }
    }
}

/// Formats one RFC 5424 message (without transport framing).
pub fn format(host: &str, m: &Message<'_>) -> Vec<u8> {
    let severity = if m.stream == Stream::Stderr { 3 } else { 6 };
    // facility user (1).
    let pri = 8 + severity;
    // RFC 5424 allows at most six fraction digits.
    let ts = std::str::from_utf8(m.ts).unwrap_or("-");
    let ts = match ts.split_once('.') {
        Some((secs, frac)) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).take(6).collect();
            format!("{secs}.{digits}Z")
        }
        None if ts.is_empty() => "-".into(),
        None => ts.into(),
    };
    let app: String = m.instance.name.chars().filter(|c| c.is_ascii_graphic()).take(48).collect();
    let mut out = format!(
        "<{pri}>1 {ts} {} {} - {} [herd@32473 tenant=\"{}\" cluster=\"{}\" pool=\"{}\"] ",
        nil(host),
        nil(&app),
        m.stream,
        sd_escape(&m.instance.tenant),
        sd_escape(&m.instance.cluster),
        sd_escape(m.pool)
    )
    .into_bytes();
    let payload = &m.payload[..m.payload.len().min(MAX_PAYLOAD)];
    // UTF-8 text gets the BOM RFC 5424 asks for; other bytes go as they are (MSG-ANY).
    if std::str::from_utf8(payload).is_ok() {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn nil(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn sd_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]")
}

async fn send_loop(target: Target, mut rx: mpsc::Receiver<Vec<u8>>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    'connect: loop {
        let conn = if target.tcp {
            TcpStream::connect(&target.addr).await.map(Conn::Tcp)
        } else {
            match UdpSocket::bind(if target.addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" }).await {
                Ok(s) => s.connect(&target.addr).await.map(|()| Conn::Udp(s)),
                Err(e) => Err(e),
            }
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot connect to the syslog collector; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            let frame = tokio::select! {
                f = rx.recv() => match f { Some(f) => f, None => return },
                _ = shutdown.cancelled() => return,
            };
            let sent = match &mut conn {
                Conn::Udp(s) => s.send(&frame).await.map(|_| ()),
                Conn::Tcp(s) => {
                    let mut framed = format!("{} ", frame.len()).into_bytes();
                    framed.extend_from_slice(&frame);
                    s.write_all(&framed).await
                }
            };
            if let Err(e) = sent {
                warn!(error = %e, "sending to the syslog collector failed; reconnecting");
                continue 'connect;
            }
        }
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::Role;
    use tokio::io::AsyncReadExt;

    fn msg<'a>(i: &'a InstanceRef, payload: &'a [u8], stream: Stream) -> Message<'a> {
        Message { instance: i, pool: "datanode", ts: b"2026-11-23T09:00:00.123456789Z", stream, payload }
    }

    #[test]
    fn formats_rfc5424_with_instance_and_structured_data() {
        let i = InstanceRef::new("acme", "prod", Role::Datanode, 3);
        let got = format("host-7", &msg(&i, b"hello", Stream::Stdout));
        let want = "<14>1 2026-11-23T09:00:00.123456Z host-7 datanode-3 - stdout [herd@32473 tenant=\"acme\" cluster=\"prod\" pool=\"datanode\"] \u{feff}hello";
        assert_eq!(String::from_utf8(got).unwrap(), want);
        let bin = format("h", &msg(&i, b"\xff\x00", Stream::Stderr));
        assert!(bin.starts_with(b"<11>1 "));
        assert!(bin.ends_with(b"] \xff\x00"), "binary payload sent as it is, without BOM");
    }

    #[test]
    fn targets_parse_or_say_what_is_wrong() {
        assert_eq!("udp://127.0.0.1:514".parse::<Target>(), Ok(Target { tcp: false, addr: "127.0.0.1:514".into() }));
        assert_eq!("tcp://[::1]:6514".parse::<Target>().map(|t| t.tcp), Ok(true));
        assert!("http://x:1".parse::<Target>().unwrap_err().contains("udp://"));
        assert!("udp://x".parse::<Target>().unwrap_err().contains("port"));
    }

    #[tokio::test]
    async fn forwards_over_udp_and_tcp_on_loopback() {
        let i = InstanceRef::new("acme", "prod", Role::Nodemanager, 1);
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stop = CancellationToken::new();
        let fu = Forwarder::start(format!("udp://{}", udp.local_addr().unwrap()).parse().unwrap(), "h1".into(), stop.clone());
        let ft = Forwarder::start(format!("tcp://{}", tcp.local_addr().unwrap()).parse().unwrap(), "h1".into(), stop.clone());
        fu.send(msg(&i, b"over udp", Stream::Stdout));
        ft.send(msg(&i, b"first", Stream::Stdout));
        ft.send(msg(&i, b"second", Stream::Stderr));
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), udp.recv(&mut buf)).await.unwrap().unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.contains(" h1 nodemanager-1 - stdout [herd@32473 tenant=\"acme\" cluster=\"prod\" pool=\"datanode\"]"), "{got}");
        assert!(got.ends_with("over udp"));
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), tcp.accept()).await.unwrap().unwrap();
        let mut all = Vec::new();
        while !String::from_utf8_lossy(&all).contains("second") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "collector connection closed");
            all.extend_from_slice(&buf[..n]);
        }
        // Octet counting: LEN SP MSG, twice.
        let text = String::from_utf8(all).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        let first = &rest[..len.parse::<usize>().unwrap()];
        assert!(first.starts_with("<14>1 ") && first.ends_with("first"), "{first}");
        assert!(rest[first.len()..].split_once(' ').unwrap().1.starts_with("<11>1 "));
        stop.cancel();
    }
}
