//! The channel table, split the way the brief splits it:
//! - `Local`: which of this shard's connections subscribe to a channel or pattern;
//! - `Owned`: for channels this shard owns, how many subscribers each shard has (so PUBLISH can
//!   answer with the exact count and fan out only to interested shards);
//! - `Patterns`: every shard's subscriber counts per pattern, replicated on every shard, since
//!   any owner may publish a matching channel.

use crate::msg::Name;
use ahash::RandomState;
use corecast_proto::glob::Glob;

use crate::history::History;
use crate::msg::{Ns, Position};

/// A connection reference that can never reach a later connection in the same slab slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// Slab key.
    pub key: u32,
    /// Generation of the connection in that slot.
    pub gen: u32,
}

/// The channel tables are dense: entries sit in a vector and the hash table holds only
/// their indexes (8 bytes a bucket), so a table sized for thousands of channels costs its
/// entries' bytes, not a power-of-two array of 50-to-70-byte buckets of which half are
/// empty (that was over 260 bytes per idle subscriber: docs/benchmarks.md).
type Map<V> = indexmap::IndexMap<Name, V, RandomState>;

/// Subscriber counts per shard: inline for up to two shards (no allocation per channel on
/// the small hosts most deployments are), boxed beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardCounts {
    /// One or two shards.
    Inline([u32; 2]),
    /// More.
    Boxed(Box<[u32]>),
}

impl ShardCounts {
    /// All zero, for `shards` shards.
    pub fn new(shards: usize) -> Self {
        if shards <= 2 {
            Self::Inline([0; 2])
        } else {
            Self::Boxed(vec![0; shards].into_boxed_slice())
        }
    }
}

impl std::ops::Index<usize> for ShardCounts {
    type Output = u32;
    fn index(&self, shard: usize) -> &u32 {
        match self {
            Self::Inline(a) => &a[shard],
            Self::Boxed(b) => &b[shard],
        }
    }
}

impl std::ops::IndexMut<usize> for ShardCounts {
    fn index_mut(&mut self, shard: usize) -> &mut u32 {
        match self {
            Self::Inline(a) => &mut a[shard],
            Self::Boxed(b) => &mut b[shard],
        }
    }
}

const _: () = assert!(std::mem::size_of::<ShardCounts>() == 16);

/// Subscribers of one name on this shard; most channels have one, kept inline.
#[derive(Debug)]
pub enum Subscribers {
    /// Exactly one.
    One(ConnRef),
    /// Two or more (boxed: the entry stays 16 bytes).
    Many(Box<ManySubscribers>),
}

const _: () = assert!(std::mem::size_of::<Subscribers>() == 16);

/// Past this many subscribers a channel keeps an index of their positions, so one leaving
/// costs a hash lookup instead of a scan: 15,000 subscribers of one channel cut at once
/// (a node's clients in a reconnect storm) were 15,000 scans of 7,500 entries on average.
const INDEXED_FROM: usize = 64;

/// The subscribers of a name with two or more: a dense list (what fan-out walks) and, for
/// big lists, where each sits in it.
#[derive(Debug, Default)]
pub struct ManySubscribers {
    list: Vec<ConnRef>,
    at: Option<std::collections::HashMap<ConnRef, u32, RandomState>>,
}

impl ManySubscribers {
    fn push(&mut self, who: ConnRef) {
        if let Some(at) = self.at.as_mut() {
            at.insert(who, self.list.len() as u32);
        }
        self.list.push(who);
        if self.at.is_none() && self.list.len() > INDEXED_FROM {
            let at = self
                .list
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, i as u32))
                .collect();
            self.at = Some(at);
        }
    }

    fn remove(&mut self, who: ConnRef) -> Option<()> {
        let pos = match self.at.as_mut() {
            Some(at) => at.remove(&who)? as usize,
            None => self.list.iter().position(|c| *c == who)?,
        };
        self.list.swap_remove(pos);
        if let (Some(at), Some(moved)) = (self.at.as_mut(), self.list.get(pos)) {
            at.insert(*moved, pos as u32);
        }
        if self.list.len() < INDEXED_FROM / 2 {
            self.at = None;
        }
        Some(())
    }
}

impl Subscribers {
    fn as_slice(&self) -> &[ConnRef] {
        match self {
            Self::One(c) => std::slice::from_ref(c),
            Self::Many(m) => &m.list,
        }
    }

    fn push(&mut self, who: ConnRef) {
        match self {
            Self::One(c) => {
                let mut m = ManySubscribers::default();
                m.push(*c);
                m.push(who);
                *self = Self::Many(Box::new(m));
            }
            Self::Many(m) => m.push(who),
        }
    }

    /// Removes `who`; returns the remaining count, or None if absent.
    fn remove(&mut self, who: ConnRef) -> Option<usize> {
        match self {
            Self::One(c) if *c == who => Some(0),
            Self::One(_) => None,
            Self::Many(m) => {
                m.remove(who)?;
                if m.list.len() == 1 {
                    *self = Self::One(m.list[0]);
                }
                Some(self.as_slice().len())
            }
        }
    }
}

/// Bytes charged to the channel budget for one channel or pattern in [`Local`], beyond its
/// name: the map entry (hash, key handle, value: 40 bytes), the name's reference counts (16)
/// and the index slot (8).
pub const LOCAL_ENTRY_BYTES: usize = 64;
/// Bytes charged for each subscription: its place in the channel's subscriber list (8, and
/// 16 more in the position index of big lists) and in the connection's own set (a name
/// handle and a hash slot, about 32).
pub const SUBSCRIPTION_BYTES: usize = 64;
/// Bytes charged for one channel in [`Owned`], beyond its name: the entry (an
/// `OwnedChannel` of 56 bytes, hash and key handle), the name's header and the index slot.
pub const OWNED_ENTRY_BYTES: usize = 128;

/// This shard's subscribers per channel (one map per namespace) and per pattern.
#[derive(Default)]
pub struct Local {
    channels: [Map<Subscribers>; 2],
    patterns: Map<Subscribers>,
    /// Bytes charged to the channel budget: names, entries and subscriptions.
    bytes: usize,
}

impl Local {
    /// Tables pre-sized for `channels` channels.
    pub fn with_capacity(channels: usize) -> Self {
        Self {
            channels: [
                Map::with_capacity_and_hasher(channels, RandomState::new()),
                Map::default(),
            ],
            patterns: Map::default(),
            bytes: 0,
        }
    }

    /// Adds a subscriber; returns how many local subscribers the channel now has.
    pub fn subscribe(&mut self, ns: Ns, channel: &Name, who: ConnRef) -> usize {
        let n = add_to(&mut self.channels[ns as usize], channel, who);
        self.bytes += charge(channel.len(), n);
        n
    }

    /// Removes a subscriber; returns the remaining count (None if it was not there).
    pub fn unsubscribe(&mut self, ns: Ns, channel: &[u8], who: ConnRef) -> Option<usize> {
        let left = remove_from(&mut self.channels[ns as usize], channel, who)?;
        self.bytes -= charge(channel.len(), left + 1).min(self.bytes);
        Some(left)
    }

    /// Adds a pattern subscriber; returns the local count.
    pub fn psubscribe(&mut self, pattern: &Name, who: ConnRef) -> usize {
        let n = add_to(&mut self.patterns, pattern, who);
        self.bytes += charge(pattern.len(), n);
        n
    }

    /// Removes a pattern subscriber; returns the remaining count.
    pub fn punsubscribe(&mut self, pattern: &[u8], who: ConnRef) -> Option<usize> {
        let left = remove_from(&mut self.patterns, pattern, who)?;
        self.bytes -= charge(pattern.len(), left + 1).min(self.bytes);
        Some(left)
    }

    /// Bytes charged to the channel budget (see [`LOCAL_ENTRY_BYTES`],
    /// [`SUBSCRIPTION_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What one more subscription to a name of `name_len` bytes would add, at most (the
    /// name and its entry when the shard has no subscriber of it yet).
    pub fn cost_of(name_len: usize) -> usize {
        charge(name_len, 1)
    }

    /// Local subscribers of a channel.
    pub fn subscribers(&self, ns: Ns, channel: &[u8]) -> &[ConnRef] {
        self.channels[ns as usize]
            .get(channel)
            .map_or(&[], |v| v.as_slice())
    }

    /// Local subscribers of a pattern.
    pub fn pattern_subscribers(&self, pattern: &[u8]) -> &[ConnRef] {
        self.patterns
            .get(pattern)
            .map_or(&[], Subscribers::as_slice)
    }
}

/// The bytes the `count`-th subscriber of a name adds: the first brings the name and its
/// entry.
fn charge(name_len: usize, count: usize) -> usize {
    if count == 1 {
        name_len + LOCAL_ENTRY_BYTES + SUBSCRIPTION_BYTES
    } else {
        SUBSCRIPTION_BYTES
    }
}

fn add_to(map: &mut Map<Subscribers>, name: &Name, who: ConnRef) -> usize {
    match map.get_mut(name.as_ref()) {
        Some(list) => {
            list.push(who);
            list.as_slice().len()
        }
        None => {
            map.insert(name.clone(), Subscribers::One(who));
            1
        }
    }
}

fn remove_from(map: &mut Map<Subscribers>, name: &[u8], who: ConnRef) -> Option<usize> {
    let left = map.get_mut(name)?.remove(who)?;
    if left == 0 {
        map.swap_remove(name);
    }
    Some(left)
}

/// What an owner keeps for one channel.
pub struct OwnedChannel {
    /// The last message's sequence number in this epoch.
    pub seq: u64,
    /// Drawn when the owner started keeping this channel (see `msg::Position`).
    pub epoch: u64,
    /// Subscribers per shard.
    pub per_shard: ShardCounts,
    /// Sum of `per_shard`.
    pub total: u32,
    /// Recent messages, when history is on and something was published (boxed: most
    /// channels of an idle gateway have none).
    pub history: Option<Box<History>>,
    /// When the last message was published or the last subscriber left (CLOCK_MONOTONIC
    /// ns): the history budget drops the least recently published histories first, and
    /// with history on an idle channel is kept `history.ttl_s` past this, so a subscriber
    /// that left a quiet channel can still resume it.
    pub last_publish_ns: u64,
}

impl OwnedChannel {
    /// The channel's current position.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Whether the owner may forget the channel: nobody subscribes and no history is left.
    fn forgettable(&self) -> bool {
        self.total == 0 && self.history.as_ref().is_none_or(|h| h.is_empty())
    }
}

/// Channels this shard owns that have subscribers somewhere or history left.
pub struct Owned {
    shards: usize,
    channels: [Map<OwnedChannel>; 2],
    /// Seeds epochs: random per process, so a restart never reuses one.
    epochs: RandomState,
    epochs_drawn: u64,
    /// History bytes held across channels.
    history_bytes: usize,
    /// Bytes charged to the channel budget: names and entries (see [`OWNED_ENTRY_BYTES`]).
    bytes: usize,
    /// Where the next sweep slice starts: (namespace, index).
    sweep_at: (usize, usize),
    /// This lap of the sweep drops subscribed channels' histories too (the last lap, dropping
    /// only the others', left the shard over its history budget).
    sweep_any: bool,
    /// Where the next search for idle channels to evict starts (a clock hand over the
    /// entries, so repeated evictions do not walk the same busy entries again).
    evict_at: [usize; 2],
    /// History is on: a channel whose last subscriber leaves is kept until the sweep finds
    /// it idle for the history TTL, so its position stays resumable meanwhile.
    keep_idle: bool,
}

impl Owned {
    /// An empty table for a mesh of `shards`, pre-sized for `channels` channels.
    pub fn new(shards: usize, channels: usize) -> Self {
        Self {
            shards,
            channels: [
                Map::with_capacity_and_hasher(channels, RandomState::new()),
                Map::default(),
            ],
            epochs: RandomState::new(),
            epochs_drawn: 0,
            history_bytes: 0,
            bytes: 0,
            evict_at: [0; 2],
            sweep_at: (0, 0),
            sweep_any: false,
            keep_idle: false,
        }
    }

    /// Keeps channels left without subscribers until the sweep expires them (history on).
    pub fn keep_idle_channels(&mut self, keep: bool) {
        self.keep_idle = keep;
    }

    fn new_channel(&mut self) -> OwnedChannel {
        self.epochs_drawn += 1;
        // 53 bits, never 0: exact in a JavaScript number, even where a client parses it as one.
        let epoch = (self.epochs.hash_one(self.epochs_drawn) >> 11).max(1);
        OwnedChannel {
            seq: 0,
            epoch,
            per_shard: ShardCounts::new(self.shards),
            total: 0,
            history: None,
            last_publish_ns: 0,
        }
    }

    /// Applies a subscriber-count change from `shard`.
    pub fn apply(&mut self, ns: Ns, channel: &Name, shard: usize, delta: i32) {
        if delta > 0 {
            let fresh = if self.channels[ns as usize].contains_key(channel.as_ref()) {
                None
            } else {
                self.bytes += channel.len() + OWNED_ENTRY_BYTES;
                Some(self.new_channel())
            };
            let map = &mut self.channels[ns as usize];
            let c = map
                .entry(channel.clone())
                .or_insert_with(|| fresh.expect("made when absent"));
            c.per_shard[shard] += delta as u32;
            c.total += delta as u32;
        } else if let Some(c) = self.channels[ns as usize].get_mut(channel.as_ref()) {
            let d = (-delta) as u32;
            debug_assert!(c.per_shard[shard] >= d, "unsubscribe without subscribe");
            c.per_shard[shard] = c.per_shard[shard].saturating_sub(d);
            c.total = c.total.saturating_sub(d);
            if c.total == 0 && self.keep_idle {
                c.last_publish_ns = corecast_runtime::clock::now_ns();
            } else if c.forgettable() {
                self.channels[ns as usize].swap_remove(channel.as_ref());
                self.bytes -= (channel.len() + OWNED_ENTRY_BYTES).min(self.bytes);
            }
        }
    }

    /// The entry for a channel, if the owner keeps one, with the stored name (shared with
    /// deliveries, so the name is kept once).
    pub fn get_mut(&mut self, ns: Ns, channel: &[u8]) -> Option<(&Name, &mut OwnedChannel)> {
        self.channels[ns as usize]
            .get_full_mut(channel)
            .map(|(_, name, c)| (name, c))
    }

    /// The entry a publish sequences on: the existing one, or with `keep` (history on) a
    /// new one, so a message published while nobody subscribes is still there to replay.
    pub fn for_publish(
        &mut self,
        ns: Ns,
        channel: &[u8],
        keep: bool,
    ) -> Option<(&Name, &mut OwnedChannel)> {
        if keep && !self.channels[ns as usize].contains_key(channel) {
            let fresh = self.new_channel();
            self.channels[ns as usize].insert(Name::from(channel), fresh);
            self.bytes += channel.len() + OWNED_ENTRY_BYTES;
        }
        self.get_mut(ns, channel)
    }

    /// Records a change in history bytes made through [`Owned::get_mut`].
    pub fn history_changed(&mut self, delta: isize) {
        self.history_bytes = self.history_bytes.saturating_add_signed(delta);
    }

    /// History bytes held across channels.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// Bytes charged to the channel budget by this table.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets channels without subscribers anywhere (their history and position go: a
    /// resume from it is a reset) until this table's charge is at most `target_bytes`,
    /// looking at no more than `max_steps` entries. Channels with subscribers are never
    /// evicted: their count is bounded by the subscribing shards' budgets. Returns the
    /// channels forgotten.
    pub fn evict_idle(&mut self, target_bytes: usize, max_steps: usize) -> usize {
        let mut evicted = 0;
        let mut steps = 0;
        for ns in 0..2 {
            let map = &mut self.channels[ns];
            let mut at = self.evict_at[ns];
            let mut looked = 0;
            while self.bytes > target_bytes && steps < max_steps && looked < map.len() {
                if at >= map.len() {
                    at = 0;
                }
                steps += 1;
                looked += 1;
                let Some((name, c)) = map.get_index(at) else {
                    break;
                };
                if c.total > 0 {
                    at += 1;
                    continue;
                }
                let name_len = name.len();
                if let Some((_, c)) = map.swap_remove_index(at) {
                    if let Some(h) = c.history {
                        self.history_bytes -= h.bytes().min(self.history_bytes);
                    }
                }
                self.bytes -= (name_len + OWNED_ENTRY_BYTES).min(self.bytes);
                evicted += 1;
            }
            self.evict_at[ns] = at;
        }
        evicted
    }

    /// One slice of the sweep: looks at up to `steps` entries from where the last slice
    /// stopped, expiring history older than `cutoff_ns` and forgetting channels left with no
    /// subscribers and no history (idle since before `cutoff_ns`). While more than
    /// `max_bytes` of history are held it also drops the histories it passes: in a first lap
    /// only those of channels nobody subscribes to; if a whole lap of those was not enough,
    /// any. Returns the channels forgotten and whether the slice reached the end of the table
    /// (the next slice starts a new lap). A table of a million channels is swept a few
    /// thousand entries a turn instead of in one turn that held the shard for tens of ms.
    pub fn sweep_step(&mut self, cutoff_ns: u64, max_bytes: usize, steps: usize) -> (usize, bool) {
        let mut forgotten = 0;
        let mut left = steps;
        while left > 0 {
            let ns = self.sweep_at.0;
            if ns >= 2 {
                // A lap done: the next one evicts subscribed histories only if this one,
                // evicting the others, left the shard over budget.
                self.sweep_any = self.history_bytes > max_bytes && !self.sweep_any;
                self.sweep_at = (0, 0);
                return (forgotten, true);
            }
            let map = &mut self.channels[ns];
            let at = self.sweep_at.1;
            if at >= map.len() {
                self.sweep_at = (ns + 1, 0);
                continue;
            }
            left -= 1;
            let over = self.history_bytes > max_bytes;
            let Some((name, c)) = map.get_index_mut(at) else {
                break;
            };
            if let Some(h) = c.history.as_mut() {
                let mut freed = h.expire(cutoff_ns);
                if over && (c.total == 0 || self.sweep_any) {
                    // The position stays: resuming across any gap is a reset, never a
                    // partial replay; the epoch ends only with the channel.
                    freed += h.bytes();
                    c.history = None;
                } else if h.is_empty() {
                    c.history = None;
                }
                self.history_bytes -= freed.min(self.history_bytes);
            }
            if c.forgettable() && c.last_publish_ns < cutoff_ns {
                let name_len = name.len();
                map.swap_remove_index(at);
                self.bytes -= (name_len + OWNED_ENTRY_BYTES).min(self.bytes);
                forgotten += 1;
            } else {
                self.sweep_at.1 = at + 1;
            }
        }
        (forgotten, false)
    }

    /// A whole sweep at once (tests, and a shard with nothing else to do): laps of
    /// [`Owned::sweep_step`] until the history budget holds or a lap has dropped any history
    /// it needed to. Returns the channels forgotten.
    pub fn sweep(&mut self, cutoff_ns: u64, max_bytes: usize) -> usize {
        let mut forgotten = 0;
        for _ in 0..2 {
            loop {
                let (f, done) = self.sweep_step(cutoff_ns, max_bytes, usize::MAX);
                forgotten += f;
                if done {
                    break;
                }
            }
            if self.history_bytes <= max_bytes {
                break;
            }
        }
        forgotten
    }

    /// Total subscribers of a channel.
    pub fn total(&self, ns: Ns, channel: &[u8]) -> u32 {
        self.channels[ns as usize]
            .get(channel)
            .map_or(0, |c| c.total)
    }

    /// Channels with subscribers in a namespace (PUBSUB CHANNELS: a channel kept only for
    /// its history is not active).
    pub fn names(&self, ns: Ns) -> impl Iterator<Item = &Name> {
        self.channels[ns as usize]
            .iter()
            .filter(|(_, c)| c.total > 0)
            .map(|(n, _)| n)
    }

    /// Number of channels the owner keeps, both namespaces.
    pub fn len(&self) -> usize {
        self.channels[0].len() + self.channels[1].len()
    }

    /// Whether the owner keeps no channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One pattern's subscriber counts on every shard.
pub struct PatternEntry {
    /// The glob pattern.
    pub pattern: Name,
    /// The pattern compiled once, here, so a publish matches it in time linear in the
    /// channel's length (`corecast_proto::glob`).
    pub glob: Glob,
    /// Subscribers per shard.
    pub per_shard: ShardCounts,
    /// Sum of `per_shard`.
    pub total: u32,
}

/// All patterns with subscribers anywhere (a replica on every shard).
pub struct Patterns {
    shards: usize,
    index: Map<usize>,
    /// Dense list for matching a published channel against every pattern.
    pub entries: Vec<PatternEntry>,
}

impl Patterns {
    /// Empty.
    pub fn new(shards: usize) -> Self {
        Self {
            shards,
            index: Map::default(),
            entries: Vec::new(),
        }
    }

    /// Applies a count change from `shard`.
    pub fn apply(&mut self, pattern: &Name, shard: usize, delta: i32) {
        if let Some(&i) = self.index.get(pattern.as_ref()) {
            let e = &mut self.entries[i];
            if delta > 0 {
                e.per_shard[shard] += delta as u32;
                e.total += delta as u32;
            } else {
                let d = (-delta) as u32;
                e.per_shard[shard] = e.per_shard[shard].saturating_sub(d);
                e.total = e.total.saturating_sub(d);
                if e.total == 0 {
                    self.index.swap_remove(pattern.as_ref());
                    self.entries.swap_remove(i);
                    if i < self.entries.len() {
                        let moved = self.entries[i].pattern.clone();
                        self.index.insert(moved, i);
                    }
                }
            }
        } else if delta > 0 {
            let mut per_shard = ShardCounts::new(self.shards);
            per_shard[shard] = delta as u32;
            self.index.insert(pattern.clone(), self.entries.len());
            self.entries.push(PatternEntry {
                pattern: pattern.clone(),
                glob: Glob::compile(pattern),
                per_shard,
                total: delta as u32,
            });
        }
    }

    /// Whether some shard subscribes to `pattern`.
    pub fn contains(&self, pattern: &[u8]) -> bool {
        self.index.contains_key(pattern)
    }

    /// Number of distinct patterns with subscribers (PUBSUB NUMPAT).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_counts_follow_deltas_and_forget_empty_channels() {
        let mut o = Owned::new(2, 16);
        let ch = Name::from(&b"news"[..]);
        o.apply(Ns::Plain, &ch, 0, 1);
        o.apply(Ns::Plain, &ch, 1, 1);
        o.apply(Ns::Plain, &ch, 1, 1);
        assert_eq!(o.total(Ns::Plain, b"news"), 3);
        assert_eq!(o.total(Ns::Shard, b"news"), 0);
        o.apply(Ns::Plain, &ch, 1, -1);
        o.apply(Ns::Plain, &ch, 1, -1);
        o.apply(Ns::Plain, &ch, 0, -1);
        assert!(o.is_empty());
    }

    fn message(ch: &Name, seq: u64, epoch: u64, ts_ns: u64) -> std::sync::Arc<crate::msg::Message> {
        std::sync::Arc::new(crate::msg::Message {
            ns: Ns::Plain,
            channel: ch.clone(),
            seq,
            epoch,
            payload: bytes::Bytes::from(vec![b'x'; 100]),
            ts_ns,
            json: false,
        })
    }

    /// Publishes one message to `ch` at `ts_ns` through the owner's table, as fan-out does.
    fn publish(o: &mut Owned, ch: &Name, ts_ns: u64) -> Position {
        let (_, c) = o.for_publish(Ns::Plain, ch, true).unwrap();
        c.seq += 1;
        c.last_publish_ns = ts_ns;
        let m = message(ch, c.seq, c.epoch, ts_ns);
        let pos = c.position();
        let delta = c
            .history
            .get_or_insert_with(Default::default)
            .push(m, 8, usize::MAX);
        o.history_changed(delta);
        pos
    }

    #[test]
    fn big_lists_index_their_members_and_stay_exact() {
        let mut l = Local::default();
        let ch = Name::from(&b"big"[..]);
        let who = |k: u32| ConnRef { key: k, gen: 1 };
        for k in 0..1000 {
            l.subscribe(Ns::Plain, &ch, who(k));
        }
        // Remove in a scattered order; the rest stay, each once.
        let mut left: std::collections::BTreeSet<u32> = (0..1000).collect();
        for k in (0..1000).map(|i| (i * 379) % 1000).take(990) {
            assert_eq!(l.unsubscribe(Ns::Plain, &ch, who(k)), Some(left.len() - 1));
            assert_eq!(l.unsubscribe(Ns::Plain, &ch, who(k)), None, "already gone");
            left.remove(&k);
            let mut now: Vec<u32> = l
                .subscribers(Ns::Plain, &ch)
                .iter()
                .map(|c| c.key)
                .collect();
            now.sort_unstable();
            assert_eq!(now, left.iter().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn epochs_are_new_for_every_channel_state() {
        let mut o = Owned::new(1, 4);
        let ch = Name::from(&b"a"[..]);
        o.apply(Ns::Plain, &ch, 0, 1);
        let first = o.get_mut(Ns::Plain, b"a").unwrap().1.epoch;
        o.apply(Ns::Plain, &ch, 0, -1);
        assert!(
            o.is_empty(),
            "without history the channel goes with its subscriber"
        );
        o.apply(Ns::Plain, &ch, 0, 1);
        let second = o.get_mut(Ns::Plain, b"a").unwrap().1.epoch;
        assert_ne!(first, second);
        assert!(first > 0 && first < 1 << 53 && second < 1 << 53);
    }

    #[test]
    fn with_history_idle_channels_stay_until_the_ttl_then_go() {
        let mut o = Owned::new(1, 4);
        o.keep_idle_channels(true);
        let ch = Name::from(&b"quiet"[..]);
        o.apply(Ns::Plain, &ch, 0, 1);
        let epoch = o.get_mut(Ns::Plain, b"quiet").unwrap().1.epoch;
        o.apply(Ns::Plain, &ch, 0, -1);
        assert_eq!(o.len(), 1, "kept: a subscriber that left can resume");
        assert_eq!(o.names(Ns::Plain).count(), 0, "but not an active channel");
        let now = corecast_runtime::clock::now_ns();
        assert_eq!(o.sweep(now.saturating_sub(10_000_000_000), usize::MAX), 0);
        assert_eq!(o.get_mut(Ns::Plain, b"quiet").unwrap().1.epoch, epoch);
        assert_eq!(o.sweep(now + 1, usize::MAX), 1, "idle past the TTL");
        assert!(o.is_empty());
        // Published to without subscribers: kept for its history, then forgotten.
        let pos = publish(&mut o, &ch, 100);
        assert_eq!(pos.seq, 1);
        assert_ne!(pos.epoch, epoch, "a new channel state, a new epoch");
        assert_eq!(o.sweep(50, usize::MAX), 0);
        assert!(o.history_bytes() > 0);
        assert_eq!(o.sweep(200, usize::MAX), 1);
        assert_eq!(o.history_bytes(), 0);
    }

    #[test]
    fn the_byte_budget_drops_unsubscribed_histories_first() {
        let mut o = Owned::new(1, 4);
        o.keep_idle_channels(true);
        let (a, b, c) = (
            Name::from(&b"a"[..]),
            Name::from(&b"b"[..]),
            Name::from(&b"c"[..]),
        );
        o.apply(Ns::Plain, &a, 0, 1);
        o.apply(Ns::Plain, &b, 0, 1);
        for t in 0..4 {
            publish(&mut o, &a, 10 + t);
        }
        for t in 0..4 {
            publish(&mut o, &b, 20 + t);
        }
        let per_channel = o.history_bytes() / 2;
        // c, published last but with no subscriber, goes first.
        for t in 0..4 {
            publish(&mut o, &c, 30 + t);
        }
        o.sweep(0, 2 * per_channel);
        assert_eq!(o.history_bytes(), 2 * per_channel);
        assert!(o.get_mut(Ns::Plain, b"c").unwrap().1.history.is_none());
        // Over budget with only subscribed histories left, a second lap drops one.
        o.sweep(0, per_channel);
        assert_eq!(o.history_bytes(), per_channel);
        let (_, ca) = o.get_mut(Ns::Plain, b"a").unwrap();
        assert!(ca.history.is_none(), "a comes first in the table");
        assert_eq!(
            ca.seq, 4,
            "its position stays: resuming it is a reset, not a new epoch"
        );
        assert!(o.get_mut(Ns::Plain, b"b").unwrap().1.history.is_some());
    }

    #[test]
    fn the_sweep_goes_in_slices_and_laps() {
        let mut o = Owned::new(1, 0);
        o.keep_idle_channels(true);
        let names: Vec<Name> = (0..100)
            .map(|i| Name::from(format!("c{i}").as_bytes()))
            .collect();
        for n in &names {
            publish(&mut o, n, 5);
        }
        let bytes_before = o.bytes();
        assert!(bytes_before > 0);
        // Every history is older than the cutoff: 10 entries a slice, eleven slices a lap.
        let mut forgotten = 0;
        let mut slices = 0;
        loop {
            let (f, done) = o.sweep_step(100, usize::MAX, 10);
            forgotten += f;
            slices += 1;
            if done {
                break;
            }
        }
        assert_eq!((forgotten, slices), (100, 11));
        assert!(o.is_empty());
        assert_eq!((o.bytes(), o.history_bytes()), (0, 0));
    }

    #[test]
    fn counts_are_inline_for_two_shards_and_boxed_beyond() {
        assert!(matches!(ShardCounts::new(1), ShardCounts::Inline(_)));
        assert!(matches!(ShardCounts::new(2), ShardCounts::Inline(_)));
        let mut o = Owned::new(4, 0);
        let ch = Name::from(&b"wide"[..]);
        for shard in 0..4 {
            o.apply(Ns::Shard, &ch, shard, 1);
        }
        let (_, c) = o.get_mut(Ns::Shard, b"wide").unwrap();
        assert!(matches!(c.per_shard, ShardCounts::Boxed(_)));
        assert_eq!((c.per_shard[3], c.total), (1, 4));
    }

    #[test]
    fn removal_keeps_the_other_channels_reachable() {
        // Dense tables move the last entry into a removed one's place.
        let mut l = Local::default();
        let names: Vec<Name> = (0..50)
            .map(|i| Name::from(format!("c{i}").as_bytes()))
            .collect();
        for (i, n) in names.iter().enumerate() {
            l.subscribe(
                Ns::Plain,
                n,
                ConnRef {
                    key: i as u32,
                    gen: 1,
                },
            );
        }
        for (i, n) in names.iter().enumerate().step_by(2) {
            assert_eq!(
                l.unsubscribe(
                    Ns::Plain,
                    n,
                    ConnRef {
                        key: i as u32,
                        gen: 1
                    }
                ),
                Some(0)
            );
        }
        for (i, n) in names.iter().enumerate() {
            let subs = l.subscribers(Ns::Plain, n);
            if i % 2 == 0 {
                assert!(subs.is_empty());
            } else {
                assert_eq!(
                    subs,
                    &[ConnRef {
                        key: i as u32,
                        gen: 1
                    }]
                );
            }
        }
    }

    #[test]
    fn patterns_keep_a_dense_index() {
        let mut p = Patterns::new(2);
        let a = Name::from(&b"a*"[..]);
        let b = Name::from(&b"b*"[..]);
        p.apply(&a, 0, 1);
        p.apply(&b, 1, 1);
        p.apply(&a, 0, -1);
        assert_eq!(p.len(), 1);
        assert_eq!(p.entries[0].pattern, b);
        p.apply(&b, 1, -1);
        assert!(p.is_empty());
    }

    #[test]
    fn local_lists_drop_empty_channels() {
        let mut l = Local::default();
        let ch = Name::from(&b"x"[..]);
        let c = ConnRef { key: 1, gen: 1 };
        assert_eq!(l.subscribe(Ns::Plain, &ch, c), 1);
        assert_eq!(l.unsubscribe(Ns::Plain, b"x", c), Some(0));
        assert_eq!(l.unsubscribe(Ns::Plain, b"x", c), None);
        assert!(l.subscribers(Ns::Plain, b"x").is_empty());
    }
}
