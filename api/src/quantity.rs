//! Resource quantities in the forms Hadoop and Kubernetes operators already write:
//! CPU as cores or millicores (`2`, `0.5`, `500m`), memory with binary or decimal
//! suffixes (`512Mi`, `4Gi`, `1G`) or plain bytes.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// CPU in millicores (1000 = one core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Cpu(pub u64);

/// Memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Memory(pub u64);

impl Cpu {
    /// Parses `2`, `0.5` or `500m`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a CPU quantity (write cores like `2` or `0.5`, or millicores like `500m`)");
        if let Some(m) = s.strip_suffix('m') {
            // At most a million cores, as for cores: what is stored must read back.
            return m.parse::<u64>().ok().filter(|m| *m <= 1_000_000_000).map(Cpu).ok_or_else(bad);
        }
        let cores: f64 = s.parse().map_err(|_| bad())?;
        Self::from_cores(cores).ok_or_else(bad)
    }

    fn from_cores(cores: f64) -> Option<Self> {
        if !cores.is_finite() || !(0.0..=1.0e6).contains(&cores) {
            return None;
        }
        let millis = cores * 1000.0;
        // NB: finer than a millicore cannot be enforced by the kernel's CFS quota we map to.
        if (millis - millis.round()).abs() > 1e-6 {
            return None;
        }
        Some(Cpu(millis.round() as u64))
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

const UNITS: [(&str, u64); 8] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

/// The most memory a quantity may say (10^18 bytes, about 888 PiB): what is stored must read
/// back, in the forms the OpenAPI document's pattern allows.
pub const MAX_MEMORY: u64 = 1_000_000_000_000_000_000;

impl Memory {
    /// Parses `536870912`, `512Mi`, `4Gi`, `1G`; at most [`MAX_MEMORY`].
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a memory quantity of at most 10^18 bytes (write e.g. `512Mi`, `4Gi` or a number of bytes)");
        for (suffix, factor) in UNITS {
            if let Some(n) = s.strip_suffix(suffix) {
                let n: u64 = n.trim().parse().map_err(|_| bad())?;
                return n.checked_mul(factor).filter(|b| *b <= MAX_MEMORY).map(Memory).ok_or_else(bad);
            }
        }
        s.parse::<u64>().ok().filter(|b| *b <= MAX_MEMORY).map(Memory).ok_or_else(bad)
    }

    /// A regex of exactly the texts [`Memory::parse`] takes (without spaces or a leading `+`):
    /// per suffix, the whole numbers up to [`MAX_MEMORY`] over its factor.
    pub fn pattern() -> String {
        let mut forms = vec![at_most(MAX_MEMORY)];
        forms.extend(UNITS.iter().map(|(suffix, factor)| format!("{}{suffix}", at_most(MAX_MEMORY / factor))));
        format!("^({})$", forms.join("|"))
    }
}

/// A regex of the decimal numbers from 0 to `bound` (leading zeros allowed up to its length).
fn at_most(bound: u64) -> String {
    let text = bound.to_string();
    let n = text.len();
    let mut forms = Vec::new();
    if n > 1 {
        forms.push(format!("[0-9]{{1,{}}}", n - 1));
    }
    for (i, c) in text.char_indices() {
        let d = c.to_digit(10).unwrap_or(0);
        if d > 0 {
            forms.push(format!("{}[0-{}][0-9]{{{}}}", &text[..i], d - 1, n - i - 1));
        }
    }
    forms.push(text);
    format!("({})", forms.join("|"))
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, factor) in UNITS.iter().take(4).rev() {
            if self.0 >= *factor && self.0.is_multiple_of(*factor) {
                return write!(f, "{}{suffix}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Memory {
    /// For people: the largest binary unit, one decimal, e.g. `22.0Gi`; not exact.
    pub fn approx(self) -> String {
        for (suffix, factor) in UNITS.iter().take(4).rev() {
            if self.0 >= *factor {
                return format!("{:.1}{suffix}", self.0 as f64 / *factor as f64);
            }
        }
        format!("{}", self.0)
    }
}

macro_rules! quantity_serde {
    ($ty:ident, $expecting:literal, $from_u64:expr, $from_f64:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        $from_u64(v).ok_or_else(|| E::custom(format!("{v} is out of range")))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        u64::try_from(v)
                            .ok()
                            .and_then($from_u64)
                            .ok_or_else(|| E::custom(format!("must not be negative, got {v}")))
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        $from_f64(v).ok_or_else(|| E::custom(format!("{v} is not a valid {}", $expecting)))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

quantity_serde!(
    Cpu,
    "a CPU quantity such as `2`, `0.5` or `500m`",
    // NB: the same bound as parsing text: what is stored must read back.
    |v: u64| (v <= 1_000_000).then(|| Cpu(v * 1000)),
    Cpu::from_cores
);
quantity_serde!(
    Memory,
    "a memory quantity such as `512Mi` or `4Gi`",
    |v: u64| (v <= MAX_MEMORY).then_some(Memory(v)),
    |_: f64| None::<Memory>
);

/// An amount of each resource a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Memory,
    #[serde(default)]
    pub disk: Memory,
}

impl Resources {
    /// The sum, saturating.
    pub fn plus(self, o: Resources) -> Resources {
        Resources {
            cpu: Cpu(self.cpu.0.saturating_add(o.cpu.0)),
            memory: Memory(self.memory.0.saturating_add(o.memory.0)),
            disk: Memory(self.disk.0.saturating_add(o.disk.0)),
        }
    }

    /// `n` of these, saturating.
    pub fn times(self, n: u32) -> Resources {
        let n = u64::from(n);
        Resources {
            cpu: Cpu(self.cpu.0.saturating_mul(n)),
            memory: Memory(self.memory.0.saturating_mul(n)),
            disk: Memory(self.disk.0.saturating_mul(n)),
        }
    }
}

/// OpenAPI schemas: quantities travel as strings (`"500m"`, `"4Gi"`); numbers are accepted too.
mod schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    /// A string of `pattern`, or a whole number of at most `max` (YAML's `cpu: 2`).
    fn string(description: &str, example: &str, pattern: &str, max: f64) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::Array(vec![Type::String, Type::Integer]))
            .minimum(Some(0.0))
            .maximum(Some(max))
            .description(Some(description))
            .pattern(Some(pattern))
            .examples([example])
            .into()
    }

    impl utoipa::PartialSchema for super::Cpu {
        fn schema() -> RefOr<Schema> {
            string("CPU: cores (`2`, `0.5`, at most 1000000) or millicores (`500m`)", "500m", r"^([0-9]{1,9}m|[0-9]{1,6}(\.[0-9]{1,3})?|1000000)$", 1.0e6)
        }
    }
    impl utoipa::ToSchema for super::Cpu {}

    impl utoipa::PartialSchema for super::Memory {
        fn schema() -> RefOr<Schema> {
            string(
                "Bytes, with an optional suffix Ki, Mi, Gi, Ti (binary) or K, M, G, T (decimal); at most 10^18 bytes",
                "4Gi",
                &super::Memory::pattern(),
                super::MAX_MEMORY as f64,
            )
        }
    }
    impl utoipa::ToSchema for super::Memory {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        for (text, millis) in [("2", 2000), ("0.5", 500), ("500m", 500), ("1.25", 1250), ("0", 0)] {
            assert_eq!(Cpu::parse(text), Ok(Cpu(millis)), "{text}");
        }
        for bad in ["", "abc", "-1", "0.0001", "5x", "m", "2000000000m", "1000001"] {
            assert!(Cpu::parse(bad).is_err(), "{bad} should be rejected");
        }
        // A number is bounded as text is: what is stored reads back (Schemathesis found a
        // quota of 1000001 cores stored, then unreadable: a 500 on every read of the tenant).
        assert!(serde_json::from_str::<Cpu>("1000001").is_err());
        let c: Cpu = serde_json::from_str("1000000").unwrap();
        assert_eq!(Cpu::parse(&c.to_string()), Ok(c));
    }

    #[test]
    fn memory_forms() {
        for (text, bytes) in [("512Mi", 512 << 20), ("4Gi", 4 << 30), ("1G", 1_000_000_000), ("1024", 1024)] {
            assert_eq!(Memory::parse(text), Ok(Memory(bytes)), "{text}");
        }
        for bad in ["", "1.5Gi", "-1Gi", "12Q", "99999999999999Ti", "1000000000000000001", "976562500000001Ki"] {
            assert!(Memory::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(Memory::parse("976562500000000Ki"), Ok(Memory(MAX_MEMORY)));
    }

    #[test]
    fn the_largest_amounts_read_back() {
        // Display of the largest amounts stays inside each suffix's bound (see
        // `openapi::requests` in the orchestrator for the pattern checked against `parse`).
        for (bytes, text) in [(MAX_MEMORY, "976562500000000Ki"), (1 << 50, "1024Ti"), (MAX_MEMORY - 1, "999999999999999999")] {
            assert_eq!(Memory(bytes).to_string(), text);
            assert_eq!(Memory::parse(text), Ok(Memory(bytes)));
        }
        assert_eq!(at_most(109), "([0-9]{1,2}|[0-0][0-9]{2}|10[0-8][0-9]{0}|109)");
    }


    #[test]
    fn display_round_trips() {
        for text in ["2", "500m", "1250m"] {
            assert_eq!(Cpu::parse(text).map(|c| c.to_string()), Ok(text.to_string()));
        }
        for text in ["512Mi", "4Gi", "1000"] {
            assert_eq!(Memory::parse(text).map(|m| m.to_string()), Ok(text.to_string()));
        }
    }

    #[test]
    fn approx_for_people() {
        assert_eq!(Memory(23_111_220 * 1024).approx(), "22.0Gi");
        assert_eq!(Memory(1536 << 20).approx(), "1.5Gi");
        assert_eq!(Memory(100).approx(), "100");
    }

    #[test]
    fn numbers_deserialize() {
        let cpu: Cpu = serde_json::from_str("2").unwrap_or_default();
        assert_eq!(cpu, Cpu(2000));
        let cpu: Cpu = serde_json::from_str("0.5").unwrap_or_default();
        assert_eq!(cpu, Cpu(500));
        assert!(serde_json::from_str::<Cpu>("-1").is_err());
        assert!(serde_json::from_str::<Memory>("-1").is_err());
    }
}
