//! Routes to the other hosts' container subnets, via their underlay addresses, over netlink.
//!
//! herd's routes carry their own protocol number ([`PROTOCOL`]) so the agent finds exactly the
//! routes it made, replaces them as the table changes and removes the ones no longer wanted,
//! while leaving every other route on the host alone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};

use super::link::{Netlink, Result, netlink};

/// The route protocol number herd marks its routes with (`ip route` shows `proto 104`).
pub const PROTOCOL: u8 = 104;

/// A route to another host's subnet: (subnet, next hop).
pub type Via = (Ipv4Net, Ipv4Addr);

/// What [`sync`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<Via>,
    pub removed: Vec<Via>,
}

/// Makes herd's routes in the calling thread's namespace exactly `want`. Idempotent.
pub async fn sync(want: &BTreeSet<Via>) -> Result<Changes> {
    let nl = Netlink::connect()?;
    let mine = list_in(&nl).await?;
    let have: BTreeSet<Via> = mine.iter().map(|(via, _)| *via).collect();
    let mut changes = Changes::default();
    for (via, msg) in mine {
        if !want.contains(&via) {
            nl.handle
                .route()
                .del(msg)
                .execute()
                .await
                .map_err(|e| netlink("removing the route to", &via.0.to_string(), e))?;
            changes.removed.push(via);
        }
    }
    for &(subnet, gateway) in want.difference(&have) {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(subnet.addr(), subnet.prefix_len())
            .gateway(gateway)
            .protocol(RouteProtocol::Other(PROTOCOL))
            .build();
        nl.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| netlink("adding the route to", &subnet.to_string(), e))?;
        changes.added.push((subnet, gateway));
    }
    Ok(changes)
}

/// herd's routes in the calling thread's namespace.
pub async fn list() -> Result<BTreeSet<Via>> {
    let nl = Netlink::connect()?;
    Ok(list_in(&nl).await?.into_iter().map(|(via, _)| via).collect())
}

async fn list_in(nl: &Netlink) -> Result<Vec<(Via, RouteMessage)>> {
    let all: Vec<RouteMessage> = nl
        .handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink("listing", "routes", e))?;
    Ok(all
        .into_iter()
        .filter(|m| m.header.protocol == RouteProtocol::Other(PROTOCOL))
        .filter_map(|m| {
            let dest = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })?;
            let gateway = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })?;
            let subnet = Ipv4Net::new(dest, m.header.destination_prefix_length).ok()?;
            Some(((subnet, gateway), m))
        })
        .collect())
}
