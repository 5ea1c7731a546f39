//! The one stable hash of herd's values: FNV-1a (64 bit) over their JSON form, as 16 hex
//! digits. Stable across herd and Rust versions on purpose: agents label containers with it
//! (a changed hash recreates a container) and report it back (config rollouts compare it).
//! Not for secrets: use SHA-256 there.

use serde::Serialize;

/// The stable hash of `v`.
pub fn stable_hash<T: Serialize + ?Sized>(v: &T) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    // NB: the JSON is hashed as it is written, never held: a rendered Hadoop config is many
    // kilobytes, hashed once per instance it is rendered for. Writing to `Fnv` cannot fail,
    // and serde_json fails only on maps with non-string keys, which herd's hashed values do
    // not have.
    let _ = serde_json::to_writer(&mut h, v);
    format!("{:016x}", h.0)
}

/// FNV-1a (64 bit) over what is written to it. (A hand-written loop and not a crate: the
/// algorithm is six lines, and the value must never change with a dependency's version.)
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_never_change() {
        // FNV-1a 64 of the JSON `""` and `{"a":1}`, computed independently; a change here
        // would recreate every container herd runs.
        assert_eq!(stable_hash(""), "07cc7607b4949e25");
        assert_eq!(stable_hash(&std::collections::BTreeMap::from([("a", 1)])), "9c3e82dd6fcae8b1");
    }

    #[test]
    fn hashing_as_written_equals_hashing_the_whole_json() {
        fn whole<T: Serialize>(v: &T) -> String {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in serde_json::to_vec(v).unwrap() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        }
        // Escapes, non-ASCII, nesting and a value long enough to be written in many pieces.
        let files = std::collections::BTreeMap::from([
            ("core-site.xml", format!("<?xml version=\"1.0\"?>\n<configuration>{}</configuration>", "<property>é\t\\</property>".repeat(500))),
            ("empty", String::new()),
        ]);
        assert_eq!(stable_hash(&files), whole(&files));
        assert_eq!(stable_hash(&(&files, 7u64, Some("image"), None::<u8>)), whole(&(&files, 7u64, Some("image"), None::<u8>)));
    }
}
