//! Hadoop's XML configuration format: `<configuration>` with one `<property>` per key.
//!
//! Keys and values are escaped, never spliced: `&`, `<`, `>` (so `]]>` cannot end anything),
//! both quotes, and tab/newline/carriage return as character references so they survive
//! attribute-value normalisation and trimming. Characters XML 1.0 cannot carry at all (other
//! C0 controls, U+FFFE, U+FFFF) are replaced by U+FFFD; validation refuses them in overrides.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Renders `properties` (sorted, as a `BTreeMap` is) as a Hadoop configuration file, with a
/// header comment naming what it was rendered for.
pub fn configuration(rendered_for: &str, properties: &BTreeMap<String, String>) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n");
    // NB: `--` may not appear in a comment; instance names are DNS labels and hold none,
    // but escape anyway so that the output is well-formed whatever the caller passes.
    let _ = writeln!(out, "<!-- Rendered by herd for {}; edits are overwritten. -->", rendered_for.replace("--", "- -"));
    out.push_str("<configuration>\n");
    for (name, value) in properties {
        let _ = write!(out, "  <property>\n    <name>{}</name>\n    <value>{}</value>\n  </property>\n", escape(name), escape(value));
    }
    out.push_str("</configuration>\n");
    out
}

/// Escapes text for an XML 1.0 element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if !allowed(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Whether XML 1.0 can carry `c` at all (its `Char` production).
pub fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_break_out() {
        assert_eq!(escape("a<b>&\"c\"'d']]>"), "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;]]&gt;");
        assert_eq!(escape(" x\ty\n"), " x&#9;y&#10;");
        assert_eq!(escape("a\u{1}b\u{FFFF}"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(escape("ünïcødé ✓"), "ünïcødé ✓");
    }

    #[test]
    fn renders_sorted_properties() {
        let props = BTreeMap::from([("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())]);
        assert_eq!(
            configuration("t/c/i", &props),
            "<?xml version=\"1.0\"?>\n<!-- Rendered by herd for t/c/i; edits are overwritten. -->\n<configuration>\n  <property>\n    <name>a</name>\n    <value>1</value>\n  </property>\n  <property>\n    <name>b</name>\n    <value>2</value>\n  </property>\n</configuration>\n"
        );
    }
}
