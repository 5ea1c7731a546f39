//! Benchmark of the pure scheduler: placements per second of `INSTANCES` DataNodes
//! (pools of 10,000, 100m CPU and 256Mi each) on `HOSTS` empty hosts (16 CPU, 64Gi), in one
//! batch, as an apply of many clusters at once hands them over.
//!
//!     cargo run --release -p herd-orchestrator --example schedbench -- [HOSTS] [INSTANCES]

use std::time::Instant;

use herd_api::quantity::{Cpu, Memory};
use herd_orchestrator::scheduler::{HostView, Request, place};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let hosts_n = args.first().copied().unwrap_or(10_000);
    let instances = args.get(1).copied().unwrap_or(100_000);
    let mut hosts: Vec<HostView> = (0..hosts_n)
        .map(|i| HostView { id: format!("host-{i:05}"), ready: true, free_cpu: 16_000, free_memory: 64 << 30, ..HostView::default() })
        .collect();
    let requests: Vec<Request> = (0..instances)
        .map(|i| Request { pool: format!("t/c{}/datanode", i / 10_000), cpu: Cpu(100), memory: Memory(256 << 20), ..Request::default() })
        .collect();
    let t = Instant::now();
    let placed = place(&mut hosts, &requests);
    let secs = t.elapsed().as_secs_f64();
    let ok = placed.iter().filter(|r| r.is_ok()).count();
    let over = hosts.iter().filter(|h| h.free_cpu > 16_000 || h.free_memory > 64 << 30).count();
    println!(
        "{hosts_n} hosts, {instances} instances: {ok} placed in {secs:.2} s = {:.0} placements/s; hosts over capacity: {over}",
        ok as f64 / secs
    );
}
