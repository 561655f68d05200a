//! Starting the shards: bind listeners (port 0 resolves once, then every shard binds the
//! same port with SO_REUSEPORT), build the mesh, spawn one pinned thread per CPU, and wait
//! until each has its io_uring.

use crate::config::limits::BACKLOG;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use corecast_runtime::listener::{bind_reuseport, ensure_unused};
use corecast_runtime::topology::{self, format_list, MemoryPolicy, ShardPlace, Topology};
use corecast_runtime::Mesh;

use crate::config::{BrokerConfig, ListenerSpec};
use crate::msg::ShardMsg;
use crate::session::Protocol;
use crate::shard::{Listener, Shard, Shared};
use crate::stats::Placement;

/// A started broker.
pub struct Running {
    /// Each listener of the configuration, in order, with the address it got (a port 0
    /// resolved).
    pub listeners: Vec<ListenerSpec>,
    pub(crate) shared: Arc<Shared>,
    /// The configuration in force (changed by `reload`).
    pub(crate) config: Arc<BrokerConfig>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks every shard to stop (they notice within one stats interval) and waits for them
    /// to flush and exit: at most `shutdown_timeout_ms`, counted from this call, plus the
    /// cancellation grace (`SHUTDOWN_CANCEL_GRACE_MS`).
    pub fn stop(self) {
        self.shared
            .stop_at_ns
            .store(corecast_runtime::clock::now_ns(), Ordering::SeqCst);
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// The address of the first listener of `protocol`.
    pub fn addr(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.protocol == protocol)
            .map(|l| l.addr)
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.threads.len()
    }

    /// A shard whose thread ended without being asked to stop, if any.
    pub fn failed_shard(&self) -> Option<usize> {
        if self.shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        self.threads.iter().position(|t| t.is_finished())
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard failed to set up its io_uring or buffers.
    #[error("shard {shard} failed to start: {source}")]
    Shard {
        /// The shard.
        shard: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// No CPUs were given.
    #[error("no CPUs to run shards on")]
    NoCpus,
    /// No listener was configured.
    #[error("no listeners configured")]
    NoListeners,
}

/// Starts the broker.
pub fn launch(cfg: BrokerConfig) -> Result<Running, LaunchError> {
    let shards = cfg.cpus.len();
    if shards == 0 {
        return Err(LaunchError::NoCpus);
    }
    if cfg.listeners.is_empty() {
        return Err(LaunchError::NoListeners);
    }
    let bind = |addr: SocketAddr| {
        bind_reuseport(addr, BACKLOG).map_err(|source| LaunchError::Bind { addr, source })
    };
    for spec in &cfg.listeners {
        ensure_unused(spec.addr).map_err(|source| LaunchError::Bind {
            addr: spec.addr,
            source,
        })?;
    }
    // The first shard binds each configured address; the others bind the address it got.
    let mut bound: Vec<ListenerSpec> = Vec::with_capacity(cfg.listeners.len());
    let mut per_shard: Vec<Vec<Listener>> = Vec::with_capacity(shards);
    for shard in 0..shards {
        let mut mine = Vec::with_capacity(cfg.listeners.len());
        for (i, spec) in cfg.listeners.iter().enumerate() {
            let addr = bound.get(i).map_or(spec.addr, |b| b.addr);
            let (fd, got) = bind(addr)?;
            if shard == 0 {
                bound.push(ListenerSpec {
                    protocol: spec.protocol,
                    addr: got,
                });
            }
            mine.push(Listener {
                fd,
                proto: spec.protocol,
                backing_off: false,
            });
        }
        per_shard.push(mine);
    }
    let places = placement(&cfg.cpus);
    let cfg = Arc::new(cfg);
    let nodes: Vec<Option<usize>> = places.iter().map(|p| p.node).collect();
    let relay = crate::relay::RelayPlan::new(&nodes);
    if relay.spans_nodes() {
        tracing::info!(
            "shards span NUMA nodes: a message crosses each node once, through a relay shard"
        );
    }
    let shared = Arc::new(Shared::with_relay(relay));
    for p in &places {
        shared.board.set_placement(
            p.shard,
            Placement {
                cpu: Some(p.cpu),
                node: p.node,
            },
        );
    }
    let endpoints = Mesh::build::<ShardMsg>(shards, cfg.ring_capacity);
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), std::io::Error>)>();
    let mut threads = Vec::with_capacity(shards);
    for ((endpoint, listeners), cpu) in endpoints.into_iter().zip(per_shard).zip(cfg.cpus.clone()) {
        let cfg = cfg.clone();
        let shared = shared.clone();
        let ready = ready_tx.clone();
        let id = endpoint.id();
        let t = std::thread::Builder::new()
            .name(format!("corecast-shard-{id}"))
            .spawn(move || {
                if !corecast_runtime::affinity::pin_current_thread(cpu) {
                    tracing::warn!(shard = id, cpu, "could not pin shard thread");
                }
                match Shard::new(cfg, shared, endpoint, listeners) {
                    Ok(shard) => {
                        let _ = ready.send((id, Ok(())));
                        shard.run();
                    }
                    Err(e) => {
                        let _ = ready.send((id, Err(e)));
                    }
                }
            })
            .map_err(|source| LaunchError::Shard { shard: id, source })?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(source))) => {
                shared.stop.store(true, Ordering::SeqCst);
                return Err(LaunchError::Shard { shard, source });
            }
            Err(_) => break,
        }
    }
    Ok(Running {
        listeners: bound,
        shared,
        config: cfg,
        threads,
    })
}

/// Where each shard will run, logged: the host's topology (from the sysfs root in
/// `CORECAST_SYSFS_ROOT`, `/` by default), each shard's CPU, node and socket, and the memory
/// policy the shards inherit. The policy is respected, not changed: every shard allocates its
/// buffers on its own thread after pinning, so under the default (local) policy they land on
/// its node, and under `--membind`/`--interleave` where numactl said.
fn placement(cpus: &[usize]) -> Vec<ShardPlace> {
    let root = topology::sysfs_root_from_env();
    let places = match Topology::read(&root) {
        Ok(topo) => {
            tracing::info!(root = %root.display(), "topology: {topo}");
            topo.placement(cpus)
        }
        Err(e) => {
            tracing::warn!(root = %root.display(), "cannot read the CPU topology ({e}); shard nodes unknown");
            cpus.iter()
                .enumerate()
                .map(|(shard, &cpu)| ShardPlace {
                    shard,
                    cpu,
                    node: None,
                    socket: None,
                    core: None,
                    core_shared_with: Vec::new(),
                    online: true,
                })
                .collect()
        }
    };
    let show = |v: Option<usize>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
    for p in &places {
        tracing::info!(
            shard = p.shard,
            cpu = p.cpu,
            node = %show(p.node),
            socket = %show(p.socket),
            "shard placement"
        );
        if !p.core_shared_with.is_empty() {
            tracing::info!(
                shard = p.shard,
                cpu = p.cpu,
                "shard shares its core with shard(s) {} (SMT siblings)",
                format_list(&p.core_shared_with)
            );
        }
    }
    let policy = MemoryPolicy::current();
    tracing::info!("memory policy: {policy}");
    let shard_nodes: Vec<usize> = places.iter().filter_map(|p| p.node).collect();
    let remote = policy.remote_nodes(&shard_nodes);
    if !remote.is_empty() {
        tracing::warn!(
            "memory policy keeps memory off node(s) {}: shards there use remote memory \
             (numactl --cpunodebind with local allocation keeps each shard's memory on its node)",
            format_list(&remote)
        );
    }
    places
}
