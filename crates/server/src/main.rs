//! The `corecast` binary.

#![forbid(unsafe_code)]

mod config;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use corecast_runtime::process::StopSignals;

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
    let signals = StopSignals::block();
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

/// Raises the soft open-files limit to the hard one: every connection is a descriptor. Warns
/// when even the hard limit is too low.
fn raise_open_files_limit(max_connections: usize) {
    let Some(lim) = corecast_runtime::process::raise_open_files_limit() else {
        return;
    };
    if lim.soft < max_connections as u64 + SPARE_DESCRIPTORS {
        tracing::warn!(
            open_files_limit = lim.soft,
            max_connections,
            "the open-files limit is below max_connections; accepts will pause when descriptors run out"
        );
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
fn wait_for_signal_or_failure(signals: &StopSignals, running: &corecast_broker::Running) -> Stop {
    loop {
        if let Some(sig) = signals.wait(100) {
            return Stop::Signal(sig);
        }
        if let Some(shard) = running.failed_shard() {
            return Stop::ShardFailed(shard);
        }
    }
}
