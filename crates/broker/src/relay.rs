//! The cross-node fan-out plan: which shards the owner of a channel hands a message to
//! directly, and which shard of each other NUMA node relays it to the rest of its node.
//!
//! Without a plan the owner pushes one handle per interested shard, so a message crosses the
//! interconnect once per interested shard on another node. With it:
//!
//! - interested shards on the owner's node (and shards whose node is unknown) get the
//!   message directly, as before;
//! - for every other node with interested shards, the owner pushes **one** handle to that
//!   node's relay, with the list of the node's other interested shards; the relay delivers to
//!   its own subscribers (if it has any) and forwards to that list over node-local rings.
//!
//! # Which shard relays
//! The relay of node `k` for owner `o` is fixed: the shard of rank `rank(o) mod n_k` on node
//! `k`, where `rank(o)` is `o`'s index among its own node's shards and `n_k` the number of
//! shards on `k`. It does not depend on which shards are interested. Two reasons:
//!
//! - **Order.** Every shard must see a channel's messages in the owner's order. Rings are
//!   FIFO, so that holds as long as each (owner, destination) pair always uses the same path
//!   ([`RelayPlan::route`]). A relay chosen from the interested set ("the lowest interested
//!   shard of the node") changes when subscriptions change, and a message sent on the new
//!   path can overtake one still waiting on the old path's relay. The same fixed path is the
//!   one anything ordered with deliveries must take (a `Join` answer must reach its shard
//!   through the relay, behind the deliveries that precede it).
//! - **Load.** Shard `r` of node `j` relays for shard `r` of node `k` and back: with equal
//!   node sizes each shard relays for exactly one owner per other node, so relaying is spread
//!   like ownership (channels hash uniformly over owners). "Lowest interested shard" would
//!   make the first shard of every node forward almost every message.
//!
//! The price: a relay with no subscribers of its own still receives the message (a node-local
//! hop, no frame built), and a lone interested shard that is not its node's relay gets the
//! message one loop turn later than a direct push would have delivered it. Neither crosses
//! the interconnect more than once.
//!
//! When every shard is on one node the plan is exactly the direct fan-out: every interested
//! shard, in the order given, and no relays.
//!
//! [`Plan`] reuses its buffers: after the first messages (warm-up) planning allocates nothing.

use std::collections::BTreeMap;

/// How a message from an owner reaches one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Pushed by the owner into the destination's ring.
    Direct,
    /// Pushed to this relay shard, which forwards it.
    Via(usize),
}

/// The shards' nodes and each (owner, node) pair's relay, computed once at start.
#[derive(Debug, Clone)]
pub struct RelayPlan {
    /// Each shard's dense node index (`None`: unknown node).
    node: Vec<Option<usize>>,
    /// Dense node index → NUMA node id.
    node_ids: Vec<usize>,
    /// Dense node index → its shards, ascending.
    members: Vec<Vec<usize>>,
    /// Each shard's index among its node's shards.
    rank: Vec<usize>,
}

impl RelayPlan {
    /// A plan for shards whose NUMA nodes are `shard_nodes[shard]` (`None` where the node is
    /// unknown: such a shard is always reached directly and never relays).
    pub fn new(shard_nodes: &[Option<usize>]) -> RelayPlan {
        let mut by_node: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (s, n) in shard_nodes.iter().enumerate() {
            if let Some(n) = n {
                by_node.entry(*n).or_default().push(s);
            }
        }
        let node_ids: Vec<usize> = by_node.keys().copied().collect();
        let members: Vec<Vec<usize>> = by_node.into_values().collect();
        let mut node = vec![None; shard_nodes.len()];
        let mut rank = vec![0; shard_nodes.len()];
        for (k, shards) in members.iter().enumerate() {
            for (r, &s) in shards.iter().enumerate() {
                node[s] = Some(k);
                rank[s] = r;
            }
        }
        RelayPlan {
            node,
            node_ids,
            members,
            rank,
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.node.len()
    }

    /// Whether the shards span more than one known node (else every plan is direct).
    pub fn spans_nodes(&self) -> bool {
        self.members.len() > 1
    }

    /// The NUMA node of `shard`, if known.
    pub fn node_of(&self, shard: usize) -> Option<usize> {
        self.node[shard].map(|k| self.node_ids[k])
    }

    /// The shards on NUMA node `node`, ascending.
    pub fn node_shards(&self, node: usize) -> &[usize] {
        match self.node_ids.binary_search(&node) {
            Ok(k) => &self.members[k],
            Err(_) => &[],
        }
    }

    /// The shard that relays `owner`'s messages to NUMA node `node`: `None` if `node` is
    /// `owner`'s own node, has no shards, or `owner`'s node is unknown.
    pub fn relay(&self, owner: usize, node: usize) -> Option<usize> {
        let k = self.node_ids.binary_search(&node).ok()?;
        self.relay_of(owner, k)
    }

    fn relay_of(&self, owner: usize, k: usize) -> Option<usize> {
        let own = self.node[owner]?;
        if own == k {
            return None;
        }
        let shards = &self.members[k];
        Some(shards[self.rank[owner] % shards.len()])
    }

    /// How `owner`'s messages reach `dest`, whatever else is interested: directly when both
    /// are on one node (or either node is unknown) or `dest` is its node's relay, else through
    /// the relay.
    pub fn route(&self, owner: usize, dest: usize) -> Route {
        match self.node[dest].and_then(|k| self.relay_of(owner, k)) {
            Some(relay) if relay != dest => Route::Via(relay),
            _ => Route::Direct,
        }
    }

    /// Plans `owner`'s fan-out to `interested` (shard ids, each below [`Self::shards`];
    /// repeats are ignored) into `out`, replacing what it held.
    pub fn plan(&self, owner: usize, interested: impl IntoIterator<Item = usize>, out: &mut Plan) {
        out.reset(self.shards(), self.members.len());
        let Plan {
            direct,
            relays,
            forward,
            buckets,
            seen,
            stamp,
        } = out;
        let own = self.node[owner];
        for s in interested {
            if seen[s] == *stamp {
                continue;
            }
            seen[s] = *stamp;
            match (own, self.node[s]) {
                (Some(a), Some(b)) if a != b => buckets[b].push(s),
                _ => direct.push(s),
            }
        }
        if own.is_none() {
            return;
        }
        for (k, bucket) in buckets.iter_mut().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            let relay = self.relay_of(owner, k).expect("a remote node has a relay");
            let start = forward.len();
            let mut relay_interested = false;
            for s in bucket.drain(..) {
                if s == relay {
                    relay_interested = true;
                } else {
                    forward.push(s);
                }
            }
            if forward.len() == start {
                // Only the relay itself: a plain delivery, on the same path.
                direct.push(relay);
            } else {
                relays.push(RelayEntry {
                    node: self.node_ids[k],
                    relay,
                    relay_interested,
                    start,
                    end: forward.len(),
                });
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RelayEntry {
    node: usize,
    relay: usize,
    relay_interested: bool,
    start: usize,
    end: usize,
}

/// One remote node's part of a plan: one handle to `relay`, which forwards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay<'a> {
    /// The NUMA node.
    pub node: usize,
    /// The shard the owner sends the handle to.
    pub relay: usize,
    /// Whether the relay has subscribers of its own for the message (else it only forwards).
    pub relay_interested: bool,
    /// The other interested shards of the node, which the relay forwards to (never empty).
    pub forward: &'a [usize],
}

/// One message's fan-out, filled by [`RelayPlan::plan`]. Keep one per shard and reuse it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    direct: Vec<usize>,
    relays: Vec<RelayEntry>,
    forward: Vec<usize>,
    /// Per dense node: the interested shards found there (scratch, emptied by each plan).
    buckets: Vec<Vec<usize>>,
    /// `seen[s] == stamp`: shard `s` was already taken in this plan.
    seen: Vec<u32>,
    stamp: u32,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Plan {
        Plan::default()
    }

    fn reset(&mut self, shards: usize, nodes: usize) {
        self.direct.clear();
        self.relays.clear();
        self.forward.clear();
        if self.buckets.len() < nodes {
            self.buckets.resize_with(nodes, Vec::new);
        }
        if self.seen.len() < shards {
            self.seen.resize(shards, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.iter_mut().for_each(|v| *v = 0);
            self.stamp = 1;
        }
    }

    /// Shards the owner delivers to directly (itself included when interested): the
    /// interested shards of its node and of unknown nodes in the order given, then remote
    /// relays that have nothing to forward.
    pub fn direct(&self) -> &[usize] {
        &self.direct
    }

    /// One entry per remote node with interested shards besides its relay, by node id.
    pub fn relays(&self) -> impl ExactSizeIterator<Item = Relay<'_>> + '_ {
        self.relays.iter().map(|e| Relay {
            node: e.node,
            relay: e.relay,
            relay_interested: e.relay_interested,
            forward: &self.forward[e.start..e.end],
        })
    }

    /// Handles the owner pushes or delivers itself: direct targets plus relays.
    pub fn owner_handles(&self) -> usize {
        self.direct.len() + self.relays.len()
    }

    /// Every shard that receives the message, with how it gets there (`Via` for forwards),
    /// relays that only forward included as `Direct`.
    pub fn receivers(&self) -> impl Iterator<Item = (usize, Route)> + '_ {
        self.direct
            .iter()
            .map(|&s| (s, Route::Direct))
            .chain(self.relays().flat_map(|r| {
                std::iter::once((r.relay, Route::Direct))
                    .chain(r.forward.iter().map(move |&s| (s, Route::Via(r.relay))))
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast_runtime::topology::{SysfsLayout, Topology};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Shard nodes as the broker would compute them: the layout written as a fake sysfs tree,
    /// read back, and the shards placed on `cpus`.
    fn shard_nodes(layout: &SysfsLayout, cpus: &[usize]) -> Vec<Option<usize>> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root: PathBuf = std::env::temp_dir().join(format!(
            "corecast-relay-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        layout.write(&root).unwrap();
        let topo = Topology::read(&root);
        let _ = std::fs::remove_dir_all(&root);
        topo.unwrap()
            .placement(cpus)
            .iter()
            .map(|p| p.node)
            .collect()
    }

    /// Checks one plan against the rules and returns the owner's handle count.
    fn check(rp: &RelayPlan, owner: usize, interested: &[usize], plan: &Plan) -> usize {
        let n = rp.shards();
        let mut got = vec![0usize; n];
        for (s, route) in plan.receivers() {
            got[s] += 1;
            // The path never depends on the interest set.
            assert_eq!(route, rp.route(owner, s), "owner {owner} shard {s}");
        }
        for r in plan.relays() {
            assert!(!r.forward.is_empty());
            assert_eq!(rp.node_of(r.relay), Some(r.node));
            assert_eq!(Some(r.relay), rp.relay(owner, r.node));
            assert_ne!(
                rp.node_of(owner),
                Some(r.node),
                "no relay on the owner's node"
            );
            for &f in r.forward {
                assert_eq!(rp.node_of(f), Some(r.node), "forwards stay on the node");
            }
            assert_eq!(r.relay_interested, interested.contains(&r.relay));
        }
        for (s, &times) in got.iter().enumerate() {
            let is_relay_only = plan.relays().any(|r| r.relay == s && !r.relay_interested);
            if interested.contains(&s) {
                assert_eq!(times, 1, "shard {s} gets it exactly once: {plan:?}");
            } else if is_relay_only {
                assert_eq!(times, 1, "a relay that only forwards receives it once");
            } else {
                assert_eq!(times, 0, "shard {s} is not interested");
            }
        }
        // Each remote node is crossed at most once, and once if anything there is interested.
        let own = rp.node_of(owner);
        let mut crossings: BTreeMap<usize, usize> = BTreeMap::new();
        for &s in plan.direct() {
            if let (Some(a), Some(b)) = (own, rp.node_of(s)) {
                if a != b {
                    *crossings.entry(b).or_default() += 1;
                }
            }
        }
        for r in plan.relays() {
            *crossings.entry(r.node).or_default() += 1;
        }
        for s in interested {
            if let (Some(a), Some(b)) = (own, rp.node_of(*s)) {
                if a != b {
                    assert_eq!(crossings.get(&b), Some(&1), "node {b} crossed once");
                }
            }
        }
        assert!(crossings.values().all(|&c| c == 1));
        plan.owner_handles()
    }

    /// Every owner with every subset of shards interested.
    fn exhaustive(rp: &RelayPlan) {
        let n = rp.shards();
        assert!(n <= 12, "exhaustive over 2^n subsets");
        let mut plan = Plan::new();
        for owner in 0..n {
            for bits in 0u32..(1 << n) {
                let interested: Vec<usize> = (0..n).filter(|s| bits & (1 << s) != 0).collect();
                rp.plan(owner, interested.iter().copied(), &mut plan);
                check(rp, owner, &interested, &plan);
            }
        }
    }

    #[test]
    fn one_node_is_todays_direct_fanout() {
        let nodes = shard_nodes(&SysfsLayout::uniform(1, 1, 4, 2), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(nodes, vec![Some(0); 8]);
        let rp = RelayPlan::new(&nodes);
        assert!(!rp.spans_nodes());
        exhaustive(&rp);
        let mut plan = Plan::new();
        for owner in 0..8 {
            for interested in [vec![], vec![3], vec![7, 0, 5], (0..8).collect::<Vec<_>>()] {
                rp.plan(owner, interested.iter().copied(), &mut plan);
                assert_eq!(plan.direct(), &interested[..], "same shards, same order");
                assert_eq!(plan.relays().len(), 0);
                assert!((0..8).all(|d| rp.route(owner, d) == Route::Direct));
            }
        }
    }

    #[test]
    fn two_sockets_two_nodes_smt() {
        // 8 CPUs, node k = CPUs k and k+4 (SMT siblings): shards 0..8 on CPUs 0..8.
        let nodes = shard_nodes(
            &SysfsLayout::uniform(2, 2, 1, 2),
            &(0..8).collect::<Vec<_>>(),
        );
        let node_ids: Vec<usize> = nodes.iter().map(|n| n.unwrap()).collect();
        assert_eq!(node_ids, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        let rp = RelayPlan::new(&nodes);
        assert!(rp.spans_nodes());
        assert_eq!(rp.node_shards(2), &[2, 6]);
        exhaustive(&rp);

        // Owner 0 (rank 0 on node 0), everyone interested: 4 → 1 handle per remote node.
        let mut plan = Plan::new();
        rp.plan(0, 0..8, &mut plan);
        assert_eq!(plan.direct(), &[0, 4]);
        let relays: Vec<(usize, usize, Vec<usize>)> = plan
            .relays()
            .map(|r| (r.node, r.relay, r.forward.to_vec()))
            .collect();
        assert_eq!(
            relays,
            vec![(1, 1, vec![5]), (2, 2, vec![6]), (3, 3, vec![7])]
        );
        assert_eq!(plan.owner_handles(), 5, "instead of 8");
        // Owner 4 is rank 1 on node 0: it relays through the ranks 1 of the other nodes.
        rp.plan(4, 0..8, &mut plan);
        assert_eq!(
            plan.relays().map(|r| r.relay).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        // Only shard 5 of node 1 interested, relay 1 is not: the message still goes through
        // shard 1 (the fixed path), which only forwards.
        rp.plan(0, [5], &mut plan);
        assert!(plan.direct().is_empty());
        let r = plan.relays().next().unwrap();
        assert_eq!(
            (r.relay, r.relay_interested, r.forward),
            (1, false, &[5][..])
        );
        // Only the relay interested: a plain direct delivery.
        rp.plan(0, [1], &mut plan);
        assert_eq!(plan.direct(), &[1]);
        assert_eq!(plan.relays().len(), 0);
    }

    #[test]
    fn mask_spread_unevenly_over_nodes() {
        // 16 CPUs over 4 nodes; the mask takes 3 CPUs of node 0, 1 of node 2, 2 of node 3
        // and none of node 1.
        let layout = SysfsLayout::uniform(2, 2, 2, 2);
        let cpus = [0, 8, 1, 4, 6, 14];
        let nodes = shard_nodes(&layout, &cpus);
        assert_eq!(
            nodes,
            vec![Some(0), Some(0), Some(0), Some(2), Some(3), Some(3)]
        );
        let rp = RelayPlan::new(&nodes);
        assert_eq!(rp.node_shards(1), &[] as &[usize]);
        assert_eq!(rp.relay(0, 1), None);
        exhaustive(&rp);
        // Ranks wrap on smaller nodes: owner 2 (rank 2 on node 0) uses rank 0 of node 3.
        assert_eq!(rp.relay(2, 3), Some(4));
        assert_eq!(rp.relay(1, 3), Some(5));
        assert_eq!(rp.relay(0, 2), Some(3));
        // Node 3's owners reach node 0 through their own rank.
        assert_eq!(rp.relay(4, 0), Some(0));
        assert_eq!(rp.relay(5, 0), Some(1));
        assert_eq!(rp.route(5, 2), Route::Via(1));
        assert_eq!(rp.route(5, 1), Route::Direct);
    }

    #[test]
    fn four_nodes_of_eight_spread_the_relay_work() {
        // The cost model's example: 4 nodes × 8 shards, everyone interested.
        let layout = SysfsLayout::uniform(2, 2, 8, 1);
        let nodes = shard_nodes(&layout, &(0..32).collect::<Vec<_>>());
        let rp = RelayPlan::new(&nodes);
        let mut plan = Plan::new();
        let mut relay_for = vec![0usize; 32];
        for owner in 0..32 {
            rp.plan(owner, 0..32, &mut plan);
            check(&rp, owner, &(0..32).collect::<Vec<_>>(), &plan);
            assert_eq!(plan.direct().len(), 8, "its own node");
            assert_eq!(plan.relays().len(), 3, "one per remote node");
            assert_eq!(plan.owner_handles(), 11, "instead of 32");
            assert!(plan.relays().all(|r| r.forward.len() == 7));
            for r in plan.relays() {
                relay_for[r.relay] += 1;
            }
        }
        assert!(
            relay_for.iter().all(|&c| c == 3),
            "each shard relays for one owner per other node: {relay_for:?}"
        );
    }

    #[test]
    fn unknown_nodes_are_reached_directly() {
        // Node 1's directory is missing: its CPUs (1 and 5) have no known node.
        let mut layout = SysfsLayout::uniform(2, 2, 1, 2);
        layout.missing_nodes = vec![1];
        let nodes = shard_nodes(&layout, &(0..8).collect::<Vec<_>>());
        assert_eq!(nodes[1], None);
        assert_eq!(nodes[5], None);
        let rp = RelayPlan::new(&nodes);
        exhaustive(&rp);
        let mut plan = Plan::new();
        rp.plan(0, 0..8, &mut plan);
        assert_eq!(plan.direct(), &[0, 1, 4, 5]);
        assert_eq!(plan.relays().len(), 2);
        // An owner on an unknown node sends everything directly.
        rp.plan(1, 0..8, &mut plan);
        assert_eq!(plan.direct(), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(plan.relays().len(), 0);
        assert!((0..8).all(|d| rp.route(1, d) == Route::Direct));
    }

    #[test]
    fn no_numa_directory_is_one_node() {
        let mut layout = SysfsLayout::uniform(1, 1, 2, 2);
        layout.node_dirs = false;
        let nodes = shard_nodes(&layout, &[0, 1, 2, 3]);
        assert_eq!(nodes, vec![Some(0); 4]);
        assert!(!RelayPlan::new(&nodes).spans_nodes());
    }

    #[test]
    fn repeats_are_ignored_and_buffers_reused() {
        let nodes: Vec<Option<usize>> = (0..32).map(|s| Some(s / 8)).collect();
        let rp = RelayPlan::new(&nodes);
        let mut plan = Plan::new();
        rp.plan(3, [9, 9, 3, 17, 3, 9], &mut plan);
        check(&rp, 3, &[3, 9, 17], &plan);
        // Warm up with the largest plans (a shard's plan only ever has its own node's bucket
        // empty; this one serves every owner), then nothing grows.
        for owner in [0, 8] {
            rp.plan(owner, 0..32, &mut plan);
        }
        let caps = |p: &Plan| {
            (
                p.direct.capacity(),
                p.relays.capacity(),
                p.forward.capacity(),
                p.buckets.iter().map(Vec::capacity).collect::<Vec<_>>(),
                p.seen.capacity(),
            )
        };
        let warm = caps(&plan);
        for owner in 0..32 {
            for step in 1..5 {
                rp.plan(owner, (0..32).filter(|s| s % step == 0), &mut plan);
                assert_eq!(caps(&plan), warm);
            }
        }
        // The stamp wraps without forgetting who was seen.
        plan.stamp = u32::MAX - 1;
        for _ in 0..3 {
            rp.plan(0, [1, 1, 9, 9], &mut plan);
            check(&rp, 0, &[1, 9], &plan);
        }
    }
}
