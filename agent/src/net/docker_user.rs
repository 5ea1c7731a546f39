//! Coexisting with Docker's firewall: accepts for herd's bridge in Docker's `DOCKER-USER` chain.
//!
//! Docker sets the FORWARD policy to DROP (through iptables-nft on Debian) and its FORWARD chain
//! jumps to `DOCKER-USER` first. A packet dropped by Docker's chain is dropped whatever herd's own
//! tables say, and with `br_netfilter` loaded (Docker loads it) that includes traffic between two
//! containers on herd's bridge. So herd accepts traffic into and out of its bridge there:
//!
//! ```text
//! iptables -I DOCKER-USER -i <bridge> -j ACCEPT
//! iptables -I DOCKER-USER -o <bridge> -j ACCEPT
//! ```
//!
//! herd's own tables still drop what tenant isolation forbids: a drop in any base chain is final.
//! This is Docker's chain, so it is edited with Docker's tool (`iptables`), not with nft.

use std::io;
use std::process::ExitStatus;

use tokio::process::Command;

/// Docker's chain for user rules.
pub const CHAIN: &str = "DOCKER-USER";

/// The `iptables` binary (Debian's is iptables-nft, as Docker's rules are).
pub const IPTABLES: &str = "iptables";

/// Errors from editing `DOCKER-USER`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bridge name cannot be an interface name.
    #[error("invalid bridge name {name:?}")]
    InvalidBridge { name: String },
    /// `iptables` could not be run.
    #[error("running {IPTABLES}")]
    Spawn(#[source] io::Error),
    /// `iptables` ran and refused.
    #[error("{IPTABLES} {args} failed ({status}): {stderr}")]
    Iptables {
        args: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// Result of `DOCKER-USER` operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What [`ensure_accept`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The accepts were missing (or one was) and were inserted.
    Added,
    /// Both accepts were there already.
    Present,
    /// There is no `DOCKER-USER` chain (Docker is not managing iptables): nothing to do.
    NoDockerChain,
}

/// Makes sure `DOCKER-USER` accepts traffic into and out of `bridge`. Idempotent.
pub async fn ensure_accept(bridge: &str) -> Result<Outcome> {
    check_bridge(bridge)?;
    if !chain_exists().await? {
        return Ok(Outcome::NoDockerChain);
    }
    let mut outcome = Outcome::Present;
    for dir in ["-i", "-o"] {
        if !iptables_ok(&["-C", CHAIN, dir, bridge, "-j", "ACCEPT"]).await? {
            iptables(&["-I", CHAIN, dir, bridge, "-j", "ACCEPT"]).await?;
            outcome = Outcome::Added;
        }
    }
    Ok(outcome)
}

/// Whether both accepts for `bridge` are in `DOCKER-USER`.
pub async fn has_accept(bridge: &str) -> Result<bool> {
    check_bridge(bridge)?;
    if !chain_exists().await? {
        return Ok(false);
    }
    for dir in ["-i", "-o"] {
        if !iptables_ok(&["-C", CHAIN, dir, bridge, "-j", "ACCEPT"]).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes the accepts for `bridge` (every copy); missing ones are success.
pub async fn remove_accept(bridge: &str) -> Result<()> {
    check_bridge(bridge)?;
    if !chain_exists().await? {
        return Ok(());
    }
    for dir in ["-i", "-o"] {
        while iptables_ok(&["-C", CHAIN, dir, bridge, "-j", "ACCEPT"]).await? {
            iptables(&["-D", CHAIN, dir, bridge, "-j", "ACCEPT"]).await?;
        }
    }
    Ok(())
}

async fn chain_exists() -> Result<bool> {
    iptables_ok(&["-S", CHAIN]).await
}

/// Runs `iptables -w ARGS`: `true` on exit 0, `false` on exit 1 (rule or chain not found).
async fn iptables_ok(args: &[&str]) -> Result<bool> {
    let out = run(args).await?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(failure(args, &out)),
    }
}

/// Runs `iptables -w ARGS`, which must succeed.
async fn iptables(args: &[&str]) -> Result<()> {
    let out = run(args).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failure(args, &out))
    }
}

async fn run(args: &[&str]) -> Result<std::process::Output> {
    // `-w`: wait for the xtables lock rather than fail while Docker edits its rules.
    Command::new(IPTABLES)
        .arg("-w")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(Error::Spawn)
}

fn failure(args: &[&str], out: &std::process::Output) -> Error {
    Error::Iptables {
        args: args.join(" "),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

fn check_bridge(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidBridge { name: name.into() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_are_checked_before_reaching_iptables() {
        for name in ["hbr0", "herd-br.1"] {
            assert!(check_bridge(name).is_ok(), "{name}");
        }
        for name in ["", "-j", "a b", "a;b", "a23456789012345x"] {
            assert!(check_bridge(name).is_err(), "{name:?}");
        }
    }
}
