//! The orchestrators of one control plane as a client knows them: the list a flag gives
//! (`herd --server`, `herd-agent --orchestrator`), and where a follower's redirect may send a
//! client. Shared by the CLI and the agent so both follow the same rules; the requests
//! themselves are each client's own.
//!
//! A follower answers `307` with `Herd-Leader: URL` and `Location: URL/PATH`. A client
//! re-sends the same request itself (reqwest's own redirects drop `Authorization` when the
//! port changes), to the leader's origin only, and never from https down to http.

use url::Url;

/// How many redirects one request follows before the client gives up on that orchestrator.
pub const MAX_HOPS: usize = 3;

/// Parses `URL[,URL...]` as given to `flag`: every entry an http(s) URL with a host; blanks
/// around commas are ignored. The error names the flag and the first bad entry.
pub fn parse_list(flag: &str, text: &str) -> Result<Vec<Url>, String> {
    let mut urls = Vec::new();
    for entry in text.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(format!("{flag}: `{text}` has an empty entry; write URL[,URL...], e.g. http://10.0.0.1:7480,http://10.0.0.2:7480"));
        }
        match Url::parse(entry) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => urls.push(url),
            _ => return Err(format!("{flag}: `{entry}` is not an http(s) URL; write e.g. http://10.0.0.1:7480")),
        }
    }
    Ok(urls)
}

/// The order a round tries the orchestrators in: `current` (the one that answered last,
/// perhaps a leader not in the list) first, then the rest of `list` from the one after it,
/// wrapping; the whole list after it when it is not in the list.
pub fn round(list: &[Url], current: &Url) -> Vec<Url> {
    let rest: Vec<Url> = match list.iter().position(|u| u == current) {
        Some(i) => list[i + 1..].iter().chain(&list[..i]).cloned().collect(),
        None => list.to_vec(),
    };
    std::iter::once(current.clone()).chain(rest).collect()
}

/// The origin (`scheme://host:port`) of `url`, without a trailing `/`.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Where a redirect from the orchestrator at `from` sends the client: the origin of
/// `Herd-Leader` (an absolute URL), else of `Location` (resolved against `from`). `None`
/// when that is not an http(s) URL with a host, or when it would go from https to http.
pub fn redirect_target(from: &Url, herd_leader: Option<&str>, location: Option<&str>) -> Option<Url> {
    let target = match (herd_leader, location) {
        (Some(leader), _) => Url::parse(leader.trim()).ok()?,
        (None, Some(location)) => from.join(location.trim()).ok()?,
        (None, None) => return None,
    };
    if !matches!(target.scheme(), "http" | "https") || !target.has_host() {
        return None;
    }
    if from.scheme() == "https" && target.scheme() != "https" {
        return None;
    }
    Url::parse(&origin(&target)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn lists_are_http_urls_and_errors_name_flag_and_entry() {
        let got = parse_list("--server", "http://a:7480, https://b:7480/").unwrap();
        assert_eq!(got, vec![url("http://a:7480"), url("https://b:7480/")]);
        for (text, bad) in [
            ("http://a:7480,ftp://b", "`ftp://b`"),
            ("http://a:7480,b:7480", "`b:7480`"),
            ("localhost", "`localhost`"),
            ("http://a:7480,,http://c", "empty entry"),
            ("", "empty entry"),
        ] {
            let e = parse_list("--server", text).unwrap_err();
            assert!(e.starts_with("--server: ") && e.contains(bad), "{text}: {e}");
        }
    }

    #[test]
    fn a_round_starts_at_the_current_one_and_wraps() {
        let list = [url("http://a:1"), url("http://b:1"), url("http://c:1")];
        assert_eq!(round(&list, &list[1]), vec![list[1].clone(), list[2].clone(), list[0].clone()]);
        assert_eq!(round(&list, &list[0]), list.to_vec());
        let leader = url("http://d:1");
        assert_eq!(round(&list, &leader), [vec![leader.clone()], list.to_vec()].concat());
    }

    #[test]
    fn redirects_go_to_an_origin_never_down_to_http() {
        let from = url("http://10.0.0.1:7480");
        // Herd-Leader, Location, where the client goes.
        type Case = (Option<&'static str>, Option<&'static str>, Option<&'static str>);
        let cases: &[Case] = &[
            (Some("http://10.0.0.2:7480"), Some("http://10.0.0.9:1/v1/x"), Some("http://10.0.0.2:7480")),
            (None, Some("http://10.0.0.3:7480/v1/hosts?limit=5"), Some("http://10.0.0.3:7480")),
            (Some("http://10.0.0.2:7480/base/"), None, Some("http://10.0.0.2:7480")),
            (Some("https://10.0.0.2:7480"), None, Some("https://10.0.0.2:7480")),
            (Some("ftp://10.0.0.2"), None, None),
            (Some("file:///etc/passwd"), None, None),
            (Some("not a url"), None, None),
            (None, Some("/v1/hosts"), Some("http://10.0.0.1:7480")),
            (None, None, None),
        ];
        for (leader, location, want) in cases {
            let got = redirect_target(&from, *leader, *location);
            assert_eq!(got.as_ref().map(origin).as_deref(), *want, "{leader:?} {location:?}");
        }
        let tls = url("https://10.0.0.1:7480");
        assert_eq!(redirect_target(&tls, Some("http://10.0.0.2:7480"), None), None);
        assert_eq!(redirect_target(&tls, None, Some("http://10.0.0.2:7480/v1/x")), None);
    }
}
