//! IPAM under contention: many allocators on one state directory, as concurrent agent tasks or
//! processes would be (each opens its own lock file descriptor, as another process would).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};
use std::thread;

use herd_agent::net::ipam::{Error, Ipam};
use ipnet::Ipv4Net;

const THREADS: usize = 100;

/// Runs `THREADS` threads, each with its own `Ipam` on `dir`, all released at once by a barrier.
fn contend<T: Send + 'static>(
    dir: &std::path::Path,
    subnet: Ipv4Net,
    work: impl Fn(usize, Ipam) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(THREADS));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (barrier, work, dir) = (barrier.clone(), work.clone(), dir.to_path_buf());
            thread::spawn(move || {
                let ipam = Ipam::open(dir, subnet).unwrap();
                barrier.wait();
                work(i, ipam)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn hundred_concurrent_allocations_get_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let subnet: Ipv4Net = "10.88.3.0/24".parse().unwrap();
    let got = contend(dir.path(), subnet, |i, ipam| {
        ipam.allocate(&format!("acme/prod/datanode-{i}")).unwrap()
    });

    let distinct: BTreeSet<Ipv4Addr> = got.iter().copied().collect();
    assert_eq!(distinct.len(), THREADS, "every owner got its own address");
    let gateway = Ipv4Addr::new(10, 88, 3, 1);
    for ip in &distinct {
        assert!(subnet.contains(ip), "{ip}");
        assert!(
            ![subnet.network(), subnet.broadcast(), gateway].contains(ip),
            "{ip}"
        );
    }
    // The file agrees with what the threads were told.
    let leases = Ipam::open(dir.path(), subnet).unwrap().leases().unwrap();
    assert_eq!(leases.len(), THREADS);
    for (i, ip) in got.iter().enumerate() {
        assert_eq!(leases.get(&format!("acme/prod/datanode-{i}")), Some(ip));
    }
}

#[test]
fn concurrent_repeat_allocations_for_one_owner_agree() {
    let dir = tempfile::tempdir().unwrap();
    let subnet: Ipv4Net = "10.88.4.0/24".parse().unwrap();
    let got = contend(dir.path(), subnet, |_, ipam| {
        ipam.allocate("acme/prod/namenode-0").unwrap()
    });
    let distinct: BTreeSet<Ipv4Addr> = got.into_iter().collect();
    assert_eq!(distinct.len(), 1, "one owner, one address: {distinct:?}");
}

#[test]
fn contention_on_a_small_pool_never_double_books_and_release_refills_it() {
    let dir = tempfile::tempdir().unwrap();
    // /26: 64 addresses less network, gateway and broadcast leaves 61 for 100 contenders.
    let subnet: Ipv4Net = "10.88.5.0/26".parse().unwrap();
    let got = contend(dir.path(), subnet, |i, ipam| {
        ipam.allocate(&format!("o{i}"))
    });

    let won: Vec<Ipv4Addr> = got
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let exhausted = got
        .iter()
        .filter(|r| matches!(r, Err(Error::Exhausted { subnet: s }) if *s == subnet))
        .count();
    assert_eq!(won.len(), 61);
    assert_eq!(
        exhausted,
        THREADS - 61,
        "every loser was told the pool is exhausted"
    );
    assert_eq!(
        won.iter().collect::<BTreeSet<_>>().len(),
        61,
        "no address handed out twice"
    );

    // Concurrent releases of every winner return the whole pool...
    let ipam = Ipam::open(dir.path(), subnet).unwrap();
    let owners: Vec<String> = ipam.leases().unwrap().into_keys().collect();
    let owners = Arc::new(owners);
    let released = contend(dir.path(), subnet, {
        let owners = owners.clone();
        move |i, ipam| owners.get(i).map(|o| ipam.release(o).unwrap())
    });
    assert_eq!(released.iter().flatten().flatten().count(), 61);
    assert!(ipam.leases().unwrap().is_empty());

    // ...so 61 new owners fit again, and the 62nd does not.
    let again: BTreeSet<Ipv4Addr> = (0..61)
        .map(|i| ipam.allocate(&format!("n{i}")).unwrap())
        .collect();
    assert_eq!(again.len(), 61);
    assert_eq!(again, won.iter().copied().collect());
    assert!(matches!(ipam.allocate("n61"), Err(Error::Exhausted { .. })));
}
