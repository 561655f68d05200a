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
    let running = corecast_broker::launch(settings.broker)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "corecast ready resp={} http={} shards={}",
            running.resp_addr,
            running.http_addr,
            running.shards()
        )?;
        out.flush()?;
    }
    tracing::info!(resp = %running.resp_addr, http = %running.http_addr, shards = running.shards(), "listening");
    let sig = wait_for_signal(&signals);
    tracing::info!(signal = sig, "stopping: draining queued data");
    running.stop();
    tracing::info!("stopped");
    Ok(())
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

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` was initialised by block_signals.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
