//! Admission of names a client hands the shard: the length of a channel or pattern, the
//! room left in the shard's channel-table budget, and the number of patterns in the process
//! and on one connection. Every front-end asks here and turns a [`Refusal`] into its own
//! error (RESP `-ERR`, a WebSocket `error`, an HTTP status); each refusal is counted.

use super::Shard;
use crate::msg::{Name, Ns};
use crate::tables::Local;

/// Entries [`Owned::evict_idle`](crate::tables::Owned::evict_idle) looks at for one
/// admission: a full table with no idle channel costs at most this much of a turn to find
/// out (about 10 µs a thousand entries).
const EVICT_STEPS: usize = 1024;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A channel name over `max_channel_bytes`.
    ChannelTooLong(usize),
    /// A pattern over `max_pattern_bytes`.
    PatternTooLong(usize),
    /// The process holds `max_patterns` distinct patterns.
    TooManyPatterns(usize),
    /// The connection holds `max_patterns_per_connection` patterns.
    ConnectionPatterns(usize),
    /// The shard's channel tables hold `max_channel_table_bytes`.
    TableFull,
}

impl Refusal {
    /// What was refused, in words (a WebSocket error's `msg`, an HTTP body).
    pub fn message(&self) -> String {
        match self {
            Refusal::ChannelTooLong(max) => format!("channel name too long (max {max} bytes)"),
            Refusal::PatternTooLong(max) => format!("pattern too long (max {max} bytes)"),
            Refusal::TooManyPatterns(max) => format!("max patterns reached ({max})"),
            Refusal::ConnectionPatterns(max) => {
                format!("max patterns per connection reached ({max})")
            }
            Refusal::TableFull => "channel table full, try later".to_string(),
        }
    }

    /// The RESP error (`ERR ...`; Redis has no such limits, so no text to copy).
    pub fn resp_error(&self) -> String {
        format!("ERR {}", self.message())
    }

    /// The native protocol's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::ChannelTooLong(_) => "channel_too_long",
            Refusal::PatternTooLong(_) => "pattern_too_long",
            Refusal::TooManyPatterns(_) | Refusal::ConnectionPatterns(_) => "too_many_patterns",
            Refusal::TableFull => "channel_table_full",
        }
    }

    /// The HTTP status and reason (SSE, `POST /pub`): a bad name is the client's error, a
    /// full table the server's, for now.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::TableFull => (503, "Service Unavailable"),
            _ => (400, "Bad Request"),
        }
    }
}

impl Shard {
    /// A channel a client publishes to: only its length matters (a publish keeps no state
    /// for a channel that has none unless history is on, which the owner bounds).
    pub(super) fn check_channel_name(&mut self, name: &[u8]) -> Result<(), Refusal> {
        let max = self.cfg.max_channel_bytes;
        if name.len() > max {
            self.counters.channel_refusals += 1;
            return Err(Refusal::ChannelTooLong(max));
        }
        Ok(())
    }

    /// A new subscription of this shard's client to a channel: its length and room for it
    /// in the channel-table budget (forgetting idle owned channels to make room).
    pub(super) fn admit_channel(&mut self, name: &[u8]) -> Result<(), Refusal> {
        self.check_channel_name(name)?;
        if !self.table_room(Local::cost_of(name.len())) {
            self.counters.channel_refusals += 1;
            return Err(Refusal::TableFull);
        }
        Ok(())
    }

    /// A new pattern subscription of a connection holding `held` patterns.
    pub(super) fn admit_pattern(&mut self, pattern: &[u8], held: usize) -> Result<(), Refusal> {
        let refusal = if pattern.len() > self.cfg.max_pattern_bytes {
            Some(Refusal::PatternTooLong(self.cfg.max_pattern_bytes))
        } else if held >= self.cfg.max_patterns_per_connection {
            Some(Refusal::ConnectionPatterns(
                self.cfg.max_patterns_per_connection,
            ))
        } else if self.patterns.len() >= self.cfg.max_patterns && !self.patterns.contains(pattern) {
            Some(Refusal::TooManyPatterns(self.cfg.max_patterns))
        } else if !self.table_room(Local::cost_of(pattern.len())) {
            Some(Refusal::TableFull)
        } else {
            None
        };
        match refusal {
            Some(r) => {
                self.counters.pattern_refusals += 1;
                Err(r)
            }
            None => Ok(()),
        }
    }

    /// Applies a subscriber-count change from `shard` to a channel this shard owns. A channel
    /// left without subscribers stays (with history on) for resumes; if that leaves the
    /// table over its budget, idle channels are forgotten until it fits, so churn over
    /// fresh names from other shards' clients is bounded here too.
    pub(super) fn owned_apply(&mut self, ns: Ns, channel: &Name, shard: usize, delta: i32) {
        self.owned.apply(ns, channel, shard, delta);
        if delta < 0 {
            self.table_room(0);
        }
    }

    /// Whether `more` bytes fit in the channel-table budget, after forgetting owned channels
    /// nobody subscribes to if that is what it takes.
    pub(super) fn table_room(&mut self, more: usize) -> bool {
        let max = self.cfg.max_channel_table_bytes;
        let used = self.local.bytes() + self.owned.bytes();
        if used + more <= max {
            return true;
        }
        let target = max.saturating_sub(self.local.bytes() + more);
        self.counters.channels_evicted += self.owned.evict_idle(target, EVICT_STEPS) as u64;
        self.local.bytes() + self.owned.bytes() + more <= max
    }
}
