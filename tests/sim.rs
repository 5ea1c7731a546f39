//! herd-sim against a real orchestrator: the simulator the scale figures come from must count
//! what happened. 200 simulated hosts heartbeat every 500 ms for 8 s over 16 connections; a
//! 20-DataNode cluster applied twice (`--copies 2`) must be delivered to them and reported
//! running, with every heartbeat answered and no host given more than its capacity.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use herd_tests::{Orchestrator, bins};
use serde_json::Value;

#[test]
fn the_simulated_fleet_registers_heartbeats_and_runs_what_it_is_given() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start_with(
        bins(),
        &tmp.path().join("orch"),
        0,
        &["--rate-limit", "1000000", "--max-pending-per-cluster", "100000"],
    )?;
    let spec = tmp.path().join("dn20.yaml");
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/specs/dn20.yaml"))?;
    std::fs::write(&spec, text)?;
    let out = Command::new(bins().join("herd-sim"))
        .args(["--orchestrator", &orch.url])
        .args(["--token-file", &orch.data_dir.join("admin.token").display().to_string()])
        .args(["--hosts", "200", "--interval", "500ms", "--duration", "8s", "--ramp", "500ms"])
        .args(["--connections", "16", "--start-delay", "500ms"])
        .args(["--apply", &spec.display().to_string(), "--copies", "2", "--apply-at", "2s"])
        .args(["--orchestrator-pid", &orch.proc.child.id().to_string(), "-o", "json"])
        .output()
        .context("cannot run herd-sim")?;
    ensure!(out.status.success(), "herd-sim failed: {}\n{}", String::from_utf8_lossy(&out.stderr), orch.proc.log_text());
    let r: Value = serde_json::from_slice(&out.stdout).with_context(|| String::from_utf8_lossy(&out.stdout).to_string())?;
    let hb = &r["heartbeats"];
    // Every host registered once and heartbeat about every 500 ms: at least 10 each in 8 s.
    ensure!(r["registrations"] == 200, "registrations: {}", r["registrations"]);
    ensure!(hb["errors"] == 0, "errors: {}", hb["error_kinds"]);
    ensure!(hb["ok"].as_u64().is_some_and(|n| n >= 2_000), "heartbeats answered: {}", hb["ok"]);
    ensure!(hb["latency_all"]["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0), "latency: {}", hb["latency_all"]);
    ensure!(hb["per_second"].as_array().is_some_and(|s| s.len() >= 8), "per second: {}", hb["per_second"]);
    let a = &r["apply"];
    ensure!(a["specs"] == 2 && a["instances"] == 40, "apply: {a}");
    ensure!(a["errors"].as_array().is_some_and(Vec::is_empty), "apply errors: {}", a["errors"]);
    ensure!(a["placed_at_end"] == 40 && a["running_at_end"] == 40, "at end: {a}");
    ensure!(a["all_placed_s"].is_number() && a["all_running_s"].is_number(), "times: {a}");
    // The orchestrator placed them all (its counts, read every 250 ms) before the last
    // reached its host.
    let (committed, delivered) = (a["all_committed_s"].as_f64(), a["all_placed_s"].as_f64());
    ensure!(committed.zip(delivered).is_some_and(|(c, d)| c <= d + 0.5), "placed by the orchestrator after the hosts had them all: {a}");
    ensure!(a["placements_beyond_expected"] == 0, "placements beyond the instances applied: {a}");
    ensure!(a["hosts_over_capacity"] == 0, "over capacity: {a}");
    // At rest: the last five intervals (from 5.5 s), measured only when every instance ran
    // before they began.
    let ran_at = a["at_s"].as_f64().unwrap_or(f64::MAX) + a["all_running_s"].as_f64().unwrap_or(f64::MAX);
    let rest = &a["at_rest"];
    if ran_at <= 5.5 {
        ensure!(rest["from_s"] == 5.5, "at rest: {rest}");
        ensure!(rest["heartbeats"].as_u64().is_some_and(|n| n >= 200), "every host heartbeat at rest: {rest}");
        ensure!(rest["served_per_s"].as_f64().is_some_and(|n| n > 0.0), "at rest: {rest}");
        ensure!(rest["latency"]["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0), "at rest: {rest}");
        // Hosts running what they were given are answered from memory at rest.
        let counts = &r["orchestrator"]["counters"];
        ensure!(counts["heartbeats_unchanged"].as_u64().is_some_and(|n| n >= 1), "busy hosts answered from memory: {counts}");
    } else {
        ensure!(rest.is_null(), "at rest measured though the instances ran only at {ran_at} s: {rest}");
    }
    ensure!(r["orchestrator"]["rss_max_mib"].as_u64().is_some_and(|m| m > 0), "RSS: {}", r["orchestrator"]);
    let derived = &r["orchestrator"]["counters"]["derivations"];
    // After its commit: for a heartbeat or for the PUT's answer.
    let after_commit = derived["commit"].as_u64().unwrap_or(0) + derived["write"].as_u64().unwrap_or(0);
    ensure!(after_commit >= 2, "each applied cluster derived at least once: {derived}");
    let (rss, anon) = (r["orchestrator"]["rss_max_mib"].as_u64(), r["orchestrator"]["rss_anon_max_mib"].as_u64());
    ensure!(anon.is_some_and(|a| a > 0 && Some(a) <= rss), "RSS of its own memory: {}", r["orchestrator"]);
    // The store writer's waits for a core were read from its thread's scheduler statistics.
    let waiting = r["orchestrator"]["writer_waiting_percent_steady"].as_f64();
    ensure!(waiting.is_some_and(|w| (0.0..=100.0).contains(&w)), "writer's waits: {}", r["orchestrator"]);
    Ok(())
}
