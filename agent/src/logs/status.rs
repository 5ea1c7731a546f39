//! Write failures of the capture, per instance, as conditions on the host's status, so a
//! full log disk shows in `herd hosts` while the agent keeps running.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use herd_api::names::InstanceRef;

/// Instances whose logs cannot be written now, with why.
#[derive(Debug, Default)]
pub struct Status {
    /// A std mutex: held for a map operation only, never across an await.
    failing: Mutex<BTreeMap<InstanceRef, (String, bool)>>,
}

impl Status {
    /// Records that `instance`'s logs cannot be written to `dir`.
    pub fn set(&self, instance: &InstanceRef, dir: &Path, e: &io::Error) {
        let full = matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded);
        let mut m = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(instance.clone(), (format!("{}: {e}", dir.display()), full));
    }

    /// Records that `instance`'s logs are written again.
    pub fn clear(&self, instance: &InstanceRef) {
        let mut m = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if !m.is_empty() {
            m.remove(instance);
        }
    }

    /// One line per kind of failure, for the heartbeat; empty when all is well.
    pub fn conditions(&self) -> Vec<String> {
        let m = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (full, name, what) in [(true, "log-disk-full", "no space for logs"), (false, "log-write-failed", "cannot write logs")] {
            let hit: Vec<_> = m.iter().filter(|(_, (_, f))| *f == full).collect();
            if let Some((_, (example, _))) = hit.first() {
                out.push(format!(
                    "{name}: {what} of {} instance(s) ({example}); capture is paused and resumes by itself, without loss, once it can write again",
                    hit.len()
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::Role;

    #[test]
    fn full_disk_is_reported_then_cleared() {
        let s = Status::default();
        let i = InstanceRef::new("t", "c", Role::Datanode, 0);
        assert!(s.conditions().is_empty());
        s.set(&i, Path::new("/logs/t/c/datanode-0/stdio"), &io::Error::from(io::ErrorKind::StorageFull));
        let c = s.conditions();
        assert_eq!(c.len(), 1);
        assert!(c[0].starts_with("log-disk-full: no space for logs of 1 instance(s) (/logs/t/c/datanode-0/stdio"), "{c:?}");
        s.clear(&i);
        assert!(s.conditions().is_empty());
    }
}
