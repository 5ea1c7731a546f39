//! `hadoop-double probe`: tiny network probes for herd's isolation tests (nothing Hadoop
//! does), so a test can send and receive real packets from inside a container or a host's
//! network namespace with the one binary the testbed images already carry:
//!
//! - `probe listen tcp|udp ADDR:PORT`: prints `from IP:PORT[ PAYLOAD]` for every connection
//!   (answering it with `probe`) or datagram, one line each, flushed at once.
//! - `probe connect ADDR:PORT [TIMEOUT_MS]`: exit 0 when a TCP connection opens within the
//!   timeout (default 2000), 1 when it does not.
//! - `probe spoof SRC_IP DST_IP:PORT PAYLOAD`: sends one UDP datagram with any source address
//!   through a raw socket; exit 0 when sent, 3 when the raw socket is refused (no `CAP_NET_RAW`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

pub fn command(args: &[String]) -> ExitCode {
    let arg = |n: usize| args.get(n).map(String::as_str).unwrap_or_default();
    let result = match (arg(0), arg(1)) {
        ("listen", "tcp") => listen_tcp(arg(2)),
        ("listen", "udp") => listen_udp(arg(2)),
        ("connect", _) => return connect(arg(1), arg(2)),
        ("spoof", _) => return spoof(arg(1), arg(2), arg(3)),
        _ => Err("usage: probe listen tcp|udp ADDR:PORT | connect ADDR:PORT [TIMEOUT_MS] | spoof SRC_IP DST_IP:PORT PAYLOAD".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::from(2)
        }
    }
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("`{s}` is not ADDR:PORT"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn listen_tcp(at: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr(at)?).map_err(|e| format!("bind {at}: {e}"))?;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        if let Ok(peer) = conn.peer_addr() {
            say(&format!("from {peer}"));
        }
        let _ = conn.write_all(b"probe\n");
    }
    Ok(())
}

fn listen_udp(at: &str) -> Result<(), String> {
    let socket = UdpSocket::bind(addr(at)?).map_err(|e| format!("bind {at}: {e}"))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).map_err(|e| format!("receive: {e}"))?;
        say(&format!("from {peer} {}", String::from_utf8_lossy(&buf[..n]).trim()));
    }
}

fn connect(to: &str, timeout_ms: &str) -> ExitCode {
    let Ok(to) = addr(to) else {
        eprintln!("probe: `{to}` is not ADDR:PORT");
        return ExitCode::from(2);
    };
    let timeout = Duration::from_millis(timeout_ms.parse().unwrap_or(2000));
    match TcpStream::connect_timeout(&to, timeout) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            println!("connected to {to}: {}", String::from_utf8_lossy(&buf[..n]).trim());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("cannot connect to {to}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn spoof(src: &str, dst: &str, payload: &str) -> ExitCode {
    let (Ok(src), Ok(SocketAddr::V4(dst))) = (src.parse::<Ipv4Addr>(), addr(dst)) else {
        eprintln!("probe: usage: spoof SRC_IP DST_IP:PORT PAYLOAD");
        return ExitCode::from(2);
    };
    // SAFETY: a plain socket(2) call; the descriptor is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        println!("raw socket refused: {e}");
        return ExitCode::from(3);
    }
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = libc::IPPROTO_UDP as u8;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // UDP checksum 0: none, as IPv4 allows.
    p[28..].copy_from_slice(payload.as_bytes());
    let to = SocketAddrV4::new(*dst.ip(), dst.port());
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.ip().octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: `p` and `sin` outlive the call; the lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd,
            p.as_ptr().cast(),
            p.len(),
            0,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let e = std::io::Error::last_os_error();
    // SAFETY: `fd` is the socket opened above, closed once.
    unsafe { libc::close(fd) };
    if sent < 0 {
        println!("send failed: {e}");
        return ExitCode::from(1);
    }
    println!("sent {sent} bytes from {src} to {dst}");
    ExitCode::SUCCESS
}
