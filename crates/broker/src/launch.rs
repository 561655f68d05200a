//! Starting the shards: bind listeners (port 0 resolves once, then every shard binds the
//! same port with SO_REUSEPORT), build the mesh, spawn one pinned thread per CPU, and wait
//! until each has its io_uring.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use corecast_runtime::listener::{bind_reuseport, ensure_unused};
use corecast_runtime::Mesh;

use crate::config::BrokerConfig;
use crate::conn::Protocol;
use crate::msg::ShardMsg;
use crate::shard::{Listener, Shard, Shared};

/// Listen backlog per shard socket.
const BACKLOG: i32 = 1024;

/// A started broker.
pub struct Running {
    /// Where RESP clients connect.
    pub resp_addr: SocketAddr,
    /// Where HTTP clients connect.
    pub http_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks every shard to stop (they notice within one stats interval) and waits for them
    /// to flush and exit.
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
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
}

/// Starts the broker.
pub fn launch(cfg: BrokerConfig) -> Result<Running, LaunchError> {
    let shards = cfg.cpus.len();
    if shards == 0 {
        return Err(LaunchError::NoCpus);
    }
    let bind = |addr: SocketAddr| {
        bind_reuseport(addr, BACKLOG).map_err(|source| LaunchError::Bind { addr, source })
    };
    for addr in [cfg.resp_listen, cfg.http_listen] {
        ensure_unused(addr).map_err(|source| LaunchError::Bind { addr, source })?;
    }
    let mut per_shard: Vec<Vec<Listener>> = Vec::with_capacity(shards);
    let (first_resp, resp_addr) = bind(cfg.resp_listen)?;
    let (first_http, http_addr) = bind(cfg.http_listen)?;
    per_shard.push(vec![
        Listener {
            fd: first_resp,
            proto: Protocol::Resp,
            backing_off: false,
        },
        Listener {
            fd: first_http,
            proto: Protocol::Http,
            backing_off: false,
        },
    ]);
    for _ in 1..shards {
        let (r, _) = bind(resp_addr)?;
        let (h, _) = bind(http_addr)?;
        per_shard.push(vec![
            Listener {
                fd: r,
                proto: Protocol::Resp,
                backing_off: false,
            },
            Listener {
                fd: h,
                proto: Protocol::Http,
                backing_off: false,
            },
        ]);
    }
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared::new(shards));
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
        resp_addr,
        http_addr,
        shared,
        threads,
    })
}
