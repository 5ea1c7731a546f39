//! The policy herd placed with before the scoring scheduler: the first ready host, ordered
//! by how many instances of the request's pool it holds and then by id (a spreading
//! first-fit), under the same rules ([`super::fits`]). Kept as the baseline the packing
//! benchmark (`packbench`) measures [`super::place`] against; a linear scan per request.

use super::{HostView, Request, commit, fits, held, unplaceable};

/// Places each request in order on the first fitting host by (instances of its pool, id).
pub fn place(hosts: &mut [HostView], requests: &[Request]) -> Vec<Result<String, String>> {
    let mut by_id: Vec<usize> = (0..hosts.len()).collect();
    by_id.sort_by(|&a, &b| hosts[a].id.cmp(&hosts[b].id));
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let chosen = by_id
            .iter()
            .copied()
            .filter(|&i| fits(&hosts[i], r))
            .min_by_key(|&i| held(&hosts[i], &r.pool));
        match chosen {
            Some(i) => {
                commit(&mut hosts[i], r);
                out.push(Ok(hosts[i].id.clone()));
            }
            None => out.push(Err(unplaceable(hosts, r))),
        }
    }
    out
}
