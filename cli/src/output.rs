//! Everything `herd` prints: one table renderer for every command, JSON and YAML for scripts,
//! one-line results of changes, errors, and the short forms of durations and memory.
//!
//! NB: stdout carries only the result (a table, or JSON/YAML that parses as a whole); progress
//! and, with `-o json|yaml`, the one-line results go to stderr.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use herd_api::quantity::Memory;
use serde::Serialize;

use crate::client::{NoToken, Unreachable};

/// How reads and the results of changes are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Aligned columns with more of them where a command has more to show (`herd status`:
    /// each instance's rack, and each cluster's DataNodes per rack); else as `table`.
    Wide,
    /// The API's objects as pretty JSON.
    Json,
    /// The API's objects as YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML, or the table `table()` renders.
pub fn emit<T: Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> Result<()> {
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(value).context("cannot encode the answer as JSON")? + "\n"
        }
        Format::Yaml => {
            herd_api::yaml::to_string(value).context("cannot encode the answer as YAML")?
        }
        Format::Table | Format::Wide => table(),
    };
    stdout(&text)
}

/// Prints the one-line result of a change, e.g. `cluster acme/prod created (generation 1)`:
/// on stdout for people, on stderr when stdout carries JSON or YAML.
pub fn note(format: Format, line: &str) -> Result<()> {
    match format {
        Format::Table | Format::Wide => stdout(&format!("{line}\n")),
        Format::Json | Format::Yaml => {
            eprintln!("{line}");
            Ok(())
        }
    }
}

/// Writes to stdout; a reader that went away (`herd status | head -1`) is not an error.
fn stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

/// Prints an error on stderr. Each line that does not start with a space is prefixed with
/// `error: `, so a list of spec errors reads one error per line; indented lines (the fields
/// of a refused request, what to do next) are printed as they are.
pub fn error(e: &anyhow::Error) {
    // The cause matters more than what we were doing when the orchestrator could not be reached.
    let text = if let Some(u) = e.downcast_ref::<Unreachable>() {
        u.to_string()
    } else if let Some(t) = e.downcast_ref::<NoToken>() {
        t.to_string()
    } else {
        format!("{e:#}")
    };
    for line in text.lines() {
        if line.starts_with(' ') {
            eprintln!("{line}");
        } else {
            eprintln!("error: {line}");
        }
    }
}

/// Renders a table: upper-case headers, left-aligned columns two spaces apart, no trailing
/// spaces. Line breaks and tabs inside a cell become spaces so rows stay one line each.
pub fn table<R>(headers: &[&str], rows: impl IntoIterator<Item = R>) -> String
where
    R: IntoIterator<Item = String>,
{
    let clean = |cell: String| cell.replace(['\n', '\r', '\t'], " ");
    let mut lines: Vec<Vec<String>> = vec![headers.iter().map(|h| h.to_uppercase()).collect()];
    lines.extend(
        rows.into_iter()
            .map(|row| row.into_iter().map(clean).collect()),
    );
    let mut widths: Vec<usize> = Vec::new();
    for line in &lines {
        for (i, cell) in line.iter().enumerate() {
            let len = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(len),
                None => widths.push(len),
            }
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (cell, width) in line.iter().zip(&widths) {
            text.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `5s`, `3m`, `2h`, `4d`: how long ago, or how long up; coarse on purpose.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Memory for people in its largest binary unit: exact when whole (`1Gi`, `512Mi`), else to
/// one decimal (`7.6Gi`, `1.5Gi`), as hosts report odd byte counts.
pub fn memory(m: Memory) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    match UNITS.iter().find(|(_, size)| m.0 >= *size) {
        Some((unit, size)) if m.0.is_multiple_of(*size) => format!("{}{unit}", m.0 / size),
        _ => m.approx(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_left_two_spaces_apart() {
        let rows = vec![
            vec!["datanode-10".to_string(), "running".into(), "up 5m".into()],
            vec!["nm".to_string(), "".into(), "".into()],
            vec![
                "x".to_string(),
                "pending".into(),
                "no ready host\nhas room".into(),
            ],
        ];
        let got = table(&["name", "STATE", "DETAIL"], rows);
        let want = "\
NAME         STATE    DETAIL
datanode-10  running  up 5m
nm
x            pending  no ready host has room
";
        assert_eq!(got, want);
    }

    #[test]
    fn empty_table_is_its_header() {
        assert_eq!(
            table(&["ID", "STATE"], Vec::<Vec<String>>::new()),
            "ID  STATE\n"
        );
    }

    #[test]
    fn multibyte_characters_count_once() {
        let got = table(&["A", "B"], [vec!["é".to_string(), "x".into()]]);
        assert_eq!(got, "A  B\né  x\n");
    }

    #[test]
    fn durations() {
        for (secs, want) in [
            (0, "0s"),
            (5, "5s"),
            (59, "59s"),
            (60, "1m"),
            (301, "5m"),
            (7300, "2h"),
            (200_000, "2d"),
        ] {
            assert_eq!(short_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn memories() {
        assert_eq!(memory(Memory(0)), "0");
        assert_eq!(memory(Memory(1 << 30)), "1Gi");
        assert_eq!(memory(Memory(512 << 20)), "512Mi");
        assert_eq!(memory(Memory(1536 << 20)), "1.5Gi");
        assert_eq!(memory(Memory(7_962_176 << 10)), "7.6Gi");
        assert_eq!(memory(Memory(1000)), "1000");
        assert_eq!(memory(Memory(8_153_268_224)), "7.6Gi");
    }
}
