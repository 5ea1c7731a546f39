//! Reading HDFS and YARN health from the masters, through their web ports: the NameNode's
//! `/jmx` beans and the ResourceManager's `/ws/v1/cluster/*`, parsed by herd's own parsers.
//! A master that does not answer gives a report whose `error` says so (a condition, never a
//! failed reconcile).

use std::time::Duration;

use herd_api::hadoop::{NameNodeHealth, ResourceManagerHealth};
use herd_hadoop::render::site::Endpoint;

/// Queries of the NameNode's `/jmx` herd reads (as herd's agent does).
pub const NAMENODE_BEANS: [&str; 3] = [
    "Hadoop:service=NameNode,name=NameNodeInfo",
    "Hadoop:service=NameNode,name=FSNamesystemState",
    "Hadoop:service=NameNode,name=FSNamesystem",
];

/// The largest answer read (a master runs tenant code).
const MAX_ANSWER: usize = 8 << 20;

/// The NameNode's health at `nn`.
pub async fn namenode(http: &reqwest::Client, nn: &Endpoint, timeout: Duration) -> NameNodeHealth {
    let base = format!("http://{}:{}/jmx?qry=", nn.host, nn.http_port);
    let answers = futures::future::join_all(NAMENODE_BEANS.iter().map(|q| get(http, format!("{base}{q}"), timeout))).await;
    match answers.into_iter().collect::<Result<Vec<String>, String>>() {
        Ok(bodies) => {
            let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
            herd_hadoop::health::namenode::parse(&refs)
        }
        Err(e) => NameNodeHealth { error: Some(e), ..NameNodeHealth::default() },
    }
}

/// The ResourceManager's health at `rm`.
pub async fn resourcemanager(http: &reqwest::Client, rm: &Endpoint, timeout: Duration) -> ResourceManagerHealth {
    let base = format!("http://{}:{}/ws/v1/cluster", rm.host, rm.http_port);
    let (info, metrics, nodes) = futures::join!(
        get(http, format!("{base}/info"), timeout),
        get(http, format!("{base}/metrics"), timeout),
        get(http, format!("{base}/nodes"), timeout),
    );
    match (metrics, nodes) {
        (Ok(m), Ok(n)) => herd_hadoop::health::resourcemanager::parse(info.ok().as_deref(), &m, &n),
        (Err(e), _) | (_, Err(e)) => ResourceManagerHealth { error: Some(e), ..ResourceManagerHealth::default() },
    }
}

/// A body read in full (at most [`MAX_ANSWER`]), or why not, in words for a condition.
async fn get(http: &reqwest::Client, url: String, timeout: Duration) -> Result<String, String> {
    let too_large = || format!("GET {url}: answer larger than {MAX_ANSWER} bytes");
    let read = async {
        let mut resp = http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| format!("GET {url}: the answer is not UTF-8"))
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| format!("GET {url}: no answer within {timeout:?}"))?
}
