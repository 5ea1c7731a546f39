//! `kube-double`: the TEST DOUBLE of a Kubernetes API server (NOT Kubernetes) as a process,
//! for trying kubectl by hand: `kube-double 127.0.0.1:8001`, then
//! `kubectl --server http://127.0.0.1:8001 get nodes`.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into()).parse()?;
    let double = herd_kube_double::KubeDouble::start_on(addr).await?;
    println!("{}", double.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
