//! The per-core runtime under corecast's shards.
//!
//! Everything here is mechanism, not policy: how a thread is pinned, how its io_uring is set
//! up, how an idle connection avoids owning a read buffer (provided-buffer rings), and how
//! shards hand each other work without locks (the SPSC mesh with sleep-aware wake-ups).
//! The broker decides what flows through these pieces.
//!
//! [`driver`] is the safe io_uring layer: it owns the ring, the provided buffers and every
//! in-flight operation's memory, so code above it submits and completes I/O without `unsafe`.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

pub mod affinity;
pub mod clock;
pub mod driver;
pub mod listener;
pub mod mesh;
pub mod process;
pub mod spsc;
pub mod topology;
pub mod uring;

pub use affinity::{parse_core_list, process_cpus, AffinityError};
pub use driver::{
    Completion, Driver, DriverConfig, Event, OpId, OpKind, RecvBuf, SendBatch, IOV_MAX,
};
pub use mesh::{Mesh, MeshEndpoint, WakeFlag};
pub use spsc::{channel, Consumer, Producer};
pub use topology::{MemoryPolicy, ShardPlace, Topology};
pub use uring::{RingFeatures, UringBuilder};
