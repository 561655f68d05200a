//! The `corecast` binary.

#![forbid(unsafe_code)]

mod config;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use corecast_runtime::process::Signals;
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

fn main() -> ExitCode {
    let cli = config::Cli::parse();
    let settings = match config::resolve(cli.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corecast: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, log_level) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match settings.log_format {
        config::LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
        config::LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match run(cli, settings, log_level) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Changes the log filter of the running process (SIGHUP).
type LogLevel = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

fn run(cli: config::Cli, settings: config::Settings, log_level: LogLevel) -> anyhow::Result<()> {
    let signals = Signals::block();
    raise_open_files_limit(settings.broker.max_connections);
    let mut log = settings.log.clone();
    let mut running = corecast_broker::launch(settings.broker)?;
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
    let mut reading: Option<PendingRead> = None;
    loop {
        match wait_for_signal_or_failure(&signals, &running, &mut reading) {
            Stop::Reload if reading.is_some() => {
                tracing::warn!("reload: the previous reload is still reading the configuration; this SIGHUP is ignored");
            }
            Stop::Reload => reading = read_config(&cli),
            Stop::Read(Ok(settings)) => apply(*settings, &mut running, &log_level, &mut log),
            Stop::Read(Err(e)) => {
                tracing::error!(error = %e, "reload refused; the running configuration stays");
            }
            Stop::Signal(sig) => {
                tracing::info!(signal = sig, "stopping: draining queued data");
                running.stop();
                tracing::info!("stopped");
                return Ok(());
            }
            Stop::ShardFailed(shard) => {
                // A shard that left its loop no longer serves its connections, its share of
                // the listening port, or its side of the mesh; its peers would stall on it.
                // Stop everything and exit non-zero so the supervisor restarts the broker.
                tracing::error!(shard, "shard stopped unexpectedly; stopping the broker");
                running.stop();
                anyhow::bail!("shard {shard} stopped unexpectedly")
            }
        }
    }
}

/// A reload's configuration being read on a helper thread.
type PendingRead = std::sync::mpsc::Receiver<Result<Box<config::Settings>, String>>;

/// SIGHUP: reads the configuration again (the same command line over the file as it is
/// now) on a helper thread, so the thread that takes SIGTERM never waits on a file (a
/// file that is not regular is refused without being read, but a regular file on a hung
/// network mount can block a read too). The result comes back through the signal loop.
fn read_config(cli: &config::Cli) -> Option<PendingRead> {
    let (tx, rx) = std::sync::mpsc::channel();
    let cli = cli.clone();
    let spawned = std::thread::Builder::new()
        .name("corecast-reload".into())
        .spawn(move || {
            let _ = tx.send(
                config::resolve(cli)
                    .map(Box::new)
                    .map_err(|e| e.to_string()),
            );
        });
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            tracing::error!(error = %e, "reload refused: cannot start the thread that reads the configuration");
            None
        }
    }
}

/// Applies what can change at run time from a reloaded configuration; a file that did not
/// parse or validate never gets here (the log said why).
fn apply(
    settings: config::Settings,
    running: &mut corecast_broker::Running,
    log_level: &LogLevel,
    log: &mut String,
) {
    for warning in &settings.warnings {
        tracing::warn!("reload: {warning}");
    }
    let report = running.reload(&settings.broker);
    let mut changed = report.applied;
    if settings.log != *log {
        let applied = EnvFilter::try_new(&settings.log)
            .ok()
            .is_some_and(|filter| log_level.reload(filter).is_ok());
        if applied {
            changed.push(format!("log: {log:?} -> {:?}", settings.log));
            *log = settings.log;
        } else {
            tracing::error!(log = %settings.log, "reload: invalid log filter; the old one stays");
        }
    }
    for name in &report.need_restart {
        tracing::warn!(option = %name, "reload: this option changes only at a restart");
    }
    if changed.is_empty() {
        tracing::info!("reload: nothing changed");
    }
    for change in changed {
        tracing::info!(%change, "reload: changed");
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

/// Why the wait for a signal ended.
enum Stop {
    /// SIGHUP: reload the configuration and go on.
    Reload,
    /// The configuration a reload read (or why it could not).
    Read(Result<Box<config::Settings>, String>),
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// A shard thread ended on its own (an io_uring error, a panic).
    ShardFailed(usize),
}

/// Waits for a signal, checking ten times a second that every shard is still running, and
/// a hundred times a second, while a reload reads the configuration, whether it is done.
fn wait_for_signal_or_failure(
    signals: &Signals,
    running: &corecast_broker::Running,
    reading: &mut Option<PendingRead>,
) -> Stop {
    loop {
        match signals.wait(if reading.is_some() { 10 } else { 100 }) {
            Some(sig) if Signals::is_reload(sig) => return Stop::Reload,
            Some(sig) => return Stop::Signal(sig),
            None => {}
        }
        if let Some(rx) = reading {
            match rx.try_recv() {
                Ok(read) => {
                    *reading = None;
                    return Stop::Read(read);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    *reading = None;
                    return Stop::Read(Err("the thread reading the configuration failed".into()));
                }
            }
        }
        if let Some(shard) = running.failed_shard() {
            return Stop::ShardFailed(shard);
        }
    }
}
