//! The `corecast` binary.

mod config;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = config::Cli::parse();
    let settings = match config::resolve(cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corecast: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: config::Settings) -> anyhow::Result<()> {
    let signals = block_signals();
    raise_open_files_limit(settings.broker.max_connections);
    let running = corecast_broker::launch(settings.broker)?;
    {
        let mut out = std::io::stdout().lock();
        let mut line = String::from("corecast ready");
        for l in &running.listeners {
            line.push_str(&format!(" {}={}", l.protocol.name(), l.addr));
        }
        writeln!(out, "{line} shards={}", running.shards())?;
        out.flush()?;
    }
    for l in &running.listeners {
        tracing::info!(protocol = l.protocol.name(), addr = %l.addr, "listening");
    }
    tracing::info!(shards = running.shards(), "ready");
    match wait_for_signal_or_failure(&signals, &running) {
        Stop::Signal(sig) => {
            tracing::info!(signal = sig, "stopping: draining queued data");
            running.stop();
            tracing::info!("stopped");
            Ok(())
        }
        Stop::ShardFailed(shard) => {
            // A shard that left its loop no longer serves its connections, its share of the
            // listening port, or its side of the mesh; its peers would stall on it. Stop
            // everything and exit non-zero so the supervisor restarts the broker.
            tracing::error!(shard, "shard stopped unexpectedly; stopping the broker");
            running.stop();
            anyhow::bail!("shard {shard} stopped unexpectedly")
        }
    }
}

/// Descriptors the broker needs beyond its clients: listeners, rings, logs, a margin.
const SPARE_DESCRIPTORS: u64 = 256;

/// Raises the soft open-files limit to the hard one, as nats-server and Go programs do: every
/// connection is a descriptor, and the usual soft default (1024) would stop the broker far
/// below `max_connections`. Warns when even the hard limit is too low.
fn raise_open_files_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        // An infinite hard limit is not a valid soft one for NOFILE; fs.nr_open is the ceiling.
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20);
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max.min(ceiling),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    let want = max_connections as u64 + SPARE_DESCRIPTORS;
    if lim.rlim_cur < want {
        tracing::warn!(
            open_files_limit = lim.rlim_cur,
            max_connections,
            "the open-files limit is below max_connections; accepts will pause when descriptors run out"
        );
    }
}

/// Blocks SIGINT and SIGTERM in this thread before any shard starts (threads inherit the
/// mask), so only `sigwait` here ever sees them; SIGPIPE is ignored outright.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a locally owned set.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Why the broker stops.
enum Stop {
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// A shard thread ended on its own (an io_uring error, a panic).
    ShardFailed(usize),
}

/// Waits for SIGINT/SIGTERM, checking ten times a second that every shard is still running.
fn wait_for_signal_or_failure(set: &libc::sigset_t, running: &corecast_broker::Running) -> Stop {
    let tick = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        // SAFETY: `set` was initialised by block_signals; no siginfo is requested.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &tick) };
        if sig > 0 {
            return Stop::Signal(sig);
        }
        if let Some(shard) = running.failed_shard() {
            return Stop::ShardFailed(shard);
        }
    }
}
