//! `herd logs`: an instance's captured stdout and stderr, streamed from the orchestrator
//! (which streams them from the instance's host) and printed line by line as they arrive.

use std::io::Write;

use anyhow::{Context, Result};
use herd_api::record::{self, Stream};
use serde::Serialize;

use crate::args::InstanceArg;
use crate::client::Client;
use crate::output::Format;

/// What to read, as given on the command line (already checked by clap).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub follow: bool,
    pub since: Option<String>,
    pub tail: Option<u32>,
    pub stream: Option<String>,
    pub timestamps: bool,
}

impl Query {
    /// The request path for `instance`.
    fn path(&self, i: &InstanceArg) -> String {
        // NB: the names are DNS labels and `since` a duration or RFC 3339 time: only `+` (a
        // time zone offset) needs escaping in a query string.
        let mut q = vec![format!("follow={}", self.follow)];
        if let Some(s) = &self.since {
            q.push(format!("since={}", s.replace('+', "%2B")));
        }
        if let Some(n) = self.tail {
            q.push(format!("tail={n}"));
        }
        if let Some(s) = &self.stream {
            q.push(format!("stream={s}"));
        }
        format!("/v1/tenants/{}/clusters/{}/instances/{}/logs?{}", i.tenant, i.cluster, i.name, q.join("&"))
    }
}

/// One line as `-o json|yaml` prints it.
#[derive(Debug, Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    stream: &'a str,
    line: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    escaped: bool,
}

/// Renders one record line (with its `\n`) for output; `None` for what is not a record.
fn render(line: &[u8], out: Format, timestamps: bool) -> Result<Option<Vec<u8>>> {
    let Some(r) = record::parse(line) else { return Ok(None) };
    if r.stream == Stream::Herd {
        return Ok(None);
    }
    let ts = String::from_utf8_lossy(r.ts);
    Ok(Some(match out {
        Format::Table | Format::Wide => {
            let mut v = Vec::with_capacity(r.payload.len() + 40);
            if timestamps {
                v.extend_from_slice(r.ts);
                v.push(b' ');
            }
            v.extend_from_slice(&record::unescape(r.payload));
            v.push(b'\n');
            v
        }
        Format::Json | Format::Yaml => {
            let raw = record::unescape(r.payload);
            let (line, escaped) = match String::from_utf8(raw) {
                Ok(s) => (s, false),
                Err(_) => (String::from_utf8_lossy(r.payload).into_owned(), true),
            };
            let j = JsonLine { time: &ts, stream: r.stream.as_str(), line, escaped };
            if out == Format::Json {
                let mut v = serde_json::to_vec(&j).context("cannot encode a line as JSON")?;
                v.push(b'\n');
                v
            } else {
                let mut v = b"---\n".to_vec();
                v.extend_from_slice(herd_api::yaml::to_string(&j).context("cannot encode a line as YAML")?.as_bytes());
                v
            }
        }
    }))
}

pub async fn run(client: &Client, out: Format, instance: &InstanceArg, q: &Query) -> Result<()> {
    let mut response = client
        .stream(&q.path(instance))
        .await
        .with_context(|| format!("cannot read the logs of {instance}"))?;
    let mut carry: Vec<u8> = Vec::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = response.chunk().await.with_context(|| format!("the log stream of {instance} broke off; run the command again"))? {
        carry.extend_from_slice(&chunk);
        let Some(last) = carry.iter().rposition(|&b| b == b'\n') else { continue };
        let rest = carry.split_off(last + 1);
        let mut buf = Vec::with_capacity(carry.len());
        for line in carry.split_inclusive(|&b| b == b'\n') {
            if let Some(r) = render(line, out, q.timestamps)? {
                buf.extend_from_slice(&r);
            }
        }
        carry = rest;
        let mut lock = stdout.lock();
        match lock.write_all(&buf).and_then(|()| lock.flush()) {
            // `herd logs ... | head` closed the pipe: done, not failed.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("cannot write to standard output")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] = b"2026-11-23T09:00:00.000000001Z stderr caf\xc3\xa9 \\xff \\\\n\n";

    #[test]
    fn lines_print_as_written_or_as_json() {
        assert_eq!(render(LINE, Format::Table, false).unwrap().unwrap(), b"caf\xc3\xa9 \xff \\n\n");
        let t = render(LINE, Format::Table, true).unwrap().unwrap();
        assert!(t.starts_with(b"2026-11-23T09:00:00.000000001Z caf"));
        let j: serde_json::Value = serde_json::from_slice(&render(LINE, Format::Json, false).unwrap().unwrap()).unwrap();
        assert_eq!(j["stream"], "stderr");
        assert_eq!(j["escaped"], true, "not UTF-8 once unescaped: {j}");
        assert!(render(b"2026-11-23T09:00:00.000000001Z herd container=x\n", Format::Table, false).unwrap().is_none());
    }

    #[test]
    fn query_path_carries_every_option() {
        let i: InstanceArg = "acme/prod/datanode-0".parse().unwrap();
        let q = Query { follow: true, since: Some("2026-11-23T09:00:00+01:00".into()), tail: Some(5), stream: Some("stderr".into()), timestamps: false };
        assert_eq!(
            q.path(&i),
            "/v1/tenants/acme/clusters/prod/instances/datanode-0/logs?follow=true&since=2026-11-23T09:00:00%2B01:00&tail=5&stream=stderr"
        );
        assert!("acme/prod".parse::<InstanceArg>().unwrap_err().contains("TENANT/CLUSTER/INSTANCE"));
    }
}
