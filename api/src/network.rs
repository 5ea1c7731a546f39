//! Container networking on the wire: the subnet the orchestrator leases a host, the table of
//! routes and addresses each agent needs to plumb and firewall its containers, and the ports a
//! pool publishes.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::names::InstanceRef;

/// A host's share of the cluster CIDR, leased by the orchestrator at registration and stable
/// for the host's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostNetwork {
    /// Every container address of every host is inside it.
    #[schema(value_type = String, example = "10.88.0.0/16")]
    pub cluster_cidr: Ipv4Net,
    /// This host's containers' subnet; its first address is the bridge's (the gateway).
    #[schema(value_type = String, example = "10.88.3.0/24")]
    pub subnet: Ipv4Net,
}

/// Everything an agent needs, beyond its own containers, to network them: how to reach the
/// other hosts' subnets, and who owns each cluster address (for tenant isolation and names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkPlan {
    #[serde(flatten)]
    pub lease: HostNetwork,
    /// The subnets of the hosts holding the tenants' instances and their underlay addresses,
    /// sorted by subnet; routed directly, without NAT. It may hold the host's own subnet, which
    /// the agent skips (it is on the bridge).
    #[serde(default)]
    #[schema(value_type = Vec<Route>)]
    pub routes: SharedList<Route>,
    /// Every container address in the cluster CIDR whose owner is known, on any host, sorted
    /// by address.
    #[serde(default)]
    #[schema(value_type = Vec<Member>)]
    pub members: SharedList<Member>,
}

/// A list many replies share: a tenant's routes and members are the same for each of its
/// hosts, so the orchestrator builds them once per version of the tenant's view and, for lists
/// made with [`SharedList::cached`], serializes them to JSON once: sending a 10,000-host
/// tenant's plan to each of its hosts serialized 700 KB per host (two thirds of the
/// orchestrator's CPU while such a tenant's instances were placed).
///
/// NB: a cached list serializes as raw JSON, so it is for JSON serializers only (the agent
/// protocol). Lists deserialized or built with `From` serialize as a plain sequence.
#[derive(Debug, Clone)]
pub struct SharedList<T> {
    items: std::sync::Arc<Vec<T>>,
    /// Set for cached lists: their JSON, made at the first serialization.
    json: Option<std::sync::Arc<std::sync::OnceLock<Box<serde_json::value::RawValue>>>>,
}

impl<T> SharedList<T> {
    /// A list whose JSON is kept once made (see the type).
    pub fn cached(items: Vec<T>) -> Self {
        SharedList { items: std::sync::Arc::new(items), json: Some(Default::default()) }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items to change; the list is then the caller's own and no longer cached.
    pub fn make_mut(&mut self) -> &mut Vec<T>
    where
        T: Clone,
    {
        self.json = None;
        std::sync::Arc::make_mut(&mut self.items)
    }
}

impl<T> Default for SharedList<T> {
    fn default() -> Self {
        SharedList { items: Default::default(), json: None }
    }
}

impl<T> From<Vec<T>> for SharedList<T> {
    fn from(items: Vec<T>) -> Self {
        SharedList { items: std::sync::Arc::new(items), json: None }
    }
}

impl<T> std::ops::Deref for SharedList<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T: PartialEq> PartialEq for SharedList<T> {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.items, &other.items) || self.items == other.items
    }
}

impl<T: Eq> Eq for SharedList<T> {}

impl<T: Serialize> Serialize for SharedList<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Some(json) => {
                if json.get().is_none() {
                    let raw = serde_json::value::to_raw_value(&*self.items).map_err(serde::ser::Error::custom)?;
                    // Another thread may have set it meanwhile: the same JSON.
                    let _ = json.set(raw);
                }
                match json.get() {
                    Some(raw) => raw.serialize(serializer),
                    None => self.items.serialize(serializer),
                }
            }
            None => self.items.serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SharedList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(deserializer).map(Self::from)
    }
}

/// What changed in a host's [`NetworkPlan`] since the plan it holds (same lease): routes
/// keyed by subnet, members by address. Sent instead of the whole plan to agents that ask for
/// it ([`crate::wire::Heartbeat::network_deltas`]): a tenant spread over 10,000 hosts has a plan
/// of 10,000 routes and members, and every container that starts changes one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkDelta {
    /// Routes added, or whose underlay address changed (replacing the route to that subnet).
    #[serde(default, skip_serializing_if = "SharedList::is_empty")]
    #[schema(value_type = Vec<Route>)]
    pub routes: SharedList<Route>,
    /// Subnets no longer routed.
    #[serde(default, skip_serializing_if = "SharedList::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub routes_removed: SharedList<Ipv4Net>,
    /// Members added, or whose owner changed (replacing the member at that address).
    #[serde(default, skip_serializing_if = "SharedList::is_empty")]
    #[schema(value_type = Vec<Member>)]
    pub members: SharedList<Member>,
    /// Addresses no longer owned by anyone the host's containers may reach.
    #[serde(default, skip_serializing_if = "SharedList::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub members_removed: SharedList<Ipv4Addr>,
}

impl NetworkPlan {
    /// Takes in `d`: the plan is then what the orchestrator computed, sorted as it sorts.
    /// O(change · log(plan)) searches, plus the shifts of a sorted `Vec`.
    pub fn apply(&mut self, d: &NetworkDelta) {
        merge(self.routes.make_mut(), &d.routes_removed, &d.routes, |r| r.subnet);
        merge(self.members.make_mut(), &d.members_removed, &d.members, |m| m.ip);
    }
}

/// Removes the entries keyed `removed` from `sorted` (sorted by `key`, keys unique), then puts
/// in `upserts`, replacing the entry of the same key.
fn merge<T: Clone, K: Ord>(sorted: &mut Vec<T>, removed: &[K], upserts: &[T], key: impl Fn(&T) -> K) {
    for k in removed {
        if let Ok(i) = sorted.binary_search_by(|x| key(x).cmp(k)) {
            sorted.remove(i);
        }
    }
    for u in upserts {
        match sorted.binary_search_by(|x| key(x).cmp(&key(u))) {
            Ok(i) => sorted[i] = u.clone(),
            Err(i) => sorted.insert(i, u.clone()),
        }
    }
}

/// A route to another host's container subnet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Route {
    #[schema(value_type = String, example = "10.88.4.0/24")]
    pub subnet: Ipv4Net,
    /// The other host's underlay address.
    #[schema(value_type = String, example = "192.0.2.14")]
    pub via: Ipv4Addr,
    /// The other host's id, for people reading it.
    pub host: String,
}

/// One container address and the instance that holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    #[schema(value_type = String, example = "10.88.3.7")]
    pub ip: Ipv4Addr,
    pub instance: InstanceRef,
}

/// Transport protocol of a published port.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A container port made reachable on its host's address (DNAT), e.g. the NameNode web UI.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The port the daemon listens on inside the container.
    pub port: u16,
    /// The port on the host's address; defaults to `port`. Two instances publishing one host
    /// port are never placed on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
}

impl PortSpec {
    /// The port on the host's address.
    pub fn host_port(&self) -> u16 {
        self.host_port.unwrap_or(self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn plan(routes: SharedList<Route>, members: SharedList<Member>) -> NetworkPlan {
        let lease = HostNetwork { cluster_cidr: "10.88.0.0/16".parse().unwrap(), subnet: "10.88.1.0/24".parse().unwrap() };
        NetworkPlan { lease, routes, members }
    }

    fn route(k: u8) -> Route {
        Route { subnet: format!("10.88.{k}.0/24").parse().unwrap(), via: Ipv4Addr::new(192, 0, 2, k), host: format!("h{k}") }
    }

    fn member(k: u8, n: u32) -> Member {
        Member { ip: Ipv4Addr::new(10, 88, k, 2), instance: InstanceRef::new("t", "c", Role::Datanode, n) }
    }

    #[test]
    fn a_cached_list_serializes_as_a_plain_one_and_reads_back_the_same() {
        let routes = vec![route(1), route(2)];
        let members = vec![member(1, 0), member(2, 1)];
        let plain = plan(routes.clone().into(), members.clone().into());
        let cached = plan(SharedList::cached(routes), SharedList::cached(members));
        let want = serde_json::to_string(&plain).unwrap();
        // Twice: made, then taken from the cache.
        assert_eq!(serde_json::to_string(&cached).unwrap(), want);
        assert_eq!(serde_json::to_string(&cached).unwrap(), want);
        let back: NetworkPlan = serde_json::from_str(&want).unwrap();
        assert_eq!(back, plain);
        assert_eq!(back, cached);
    }

    #[test]
    fn a_delta_changes_a_shared_list_without_its_cached_json() {
        let mut held = plan(SharedList::cached(vec![route(1), route(2)]), SharedList::cached(vec![member(1, 0)]));
        let shared = held.clone();
        let _ = serde_json::to_string(&held).unwrap();
        held.apply(&NetworkDelta {
            routes: vec![route(3)].into(),
            routes_removed: vec!["10.88.1.0/24".parse().unwrap()].into(),
            members: SharedList::cached(vec![member(2, 5), member(1, 9)]),
            members_removed: vec![].into(),
        });
        let want = plan(vec![route(2), route(3)].into(), vec![member(1, 9), member(2, 5)].into());
        assert_eq!(held, want);
        assert_eq!(serde_json::to_string(&held).unwrap(), serde_json::to_string(&want).unwrap());
        // The list it shared is untouched.
        assert_eq!(shared.routes.len(), 2);
        assert_eq!(shared.routes[0].host, "h1");
        held.apply(&NetworkDelta { members_removed: vec![Ipv4Addr::new(10, 88, 2, 2), Ipv4Addr::new(10, 88, 9, 9)].into(), ..Default::default() });
        assert_eq!(held.members.iter().map(|m| m.instance.name.as_str()).collect::<Vec<_>>(), [member(1, 9).instance.name.as_str()]);
    }
}
