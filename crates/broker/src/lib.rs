//! corecast's broker: shards, the channel table, interest, fan-out, outbound queues, stats.
//!
//! [`launch()`] starts one pinned shard per CPU and returns once every shard listens.

#![forbid(unsafe_code)]

pub mod config;
pub mod conn;
pub mod delivery;
pub mod history;
pub mod launch;
pub mod msg;
pub mod outbound;
pub mod paced;
pub mod pause;
pub mod pending;
pub mod relay;
pub mod reload;
pub mod session;
pub mod shard;
pub mod stats;
pub mod subset;
pub mod tables;

pub use config::{BrokerConfig, ListenerSpec, SlowConsumerPolicy};
pub use launch::{launch, Running};
pub use session::Protocol;
