//! `corecast-bench`: one load generator for corecast, redis-server and the raw ideal sender.
//!
//! N subscribers over C channels (subscriber i on channel i mod C), P publishers; closed loop
//! under a per-subscriber window by default, open loop with `--rate`. Prints a progress line
//! per second on stderr, a summary on stderr, and one JSON line on stdout with `--json`.

mod accounting;
mod frames;
mod payload;
mod proto;
mod publishers;
mod raw;
mod shared;
mod subscribers;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;

use shared::Shared;

/// Load generator for pub/sub brokers speaking the Redis or the NATS protocol.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Broker address (ignored with --raw).
    #[arg(long, default_value = "127.0.0.1:6379")]
    target: SocketAddr,
    /// Protocol the broker speaks: resp (Redis pub/sub) or nats.
    #[arg(long, value_enum, default_value_t = proto::Proto::Resp)]
    proto: proto::Proto,
    /// Use the built-in ideal sender instead of a broker (it speaks RESP to the subscribers).
    #[arg(long)]
    raw: bool,
    /// CPU to pin the raw sender to.
    #[arg(long)]
    raw_cpu: Option<usize>,
    /// Subscriber connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Channels (subscriber i listens on channel i mod channels).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Payload bytes (at least 24: the timestamp/sequence header).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Messages in flight per subscriber (closed loop).
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Total messages per second across publishers (open loop); omit for max rate.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Subscriber threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// PUBLISH commands per write.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Print one JSON line on stdout.
    #[arg(long)]
    json: bool,
    /// Instead of a pub/sub run: hold this many idle connections, each subscribed to its own
    /// channel, for --hold-s seconds (memory-per-connection runs).
    #[arg(long)]
    idle_conns: Option<usize>,
    /// Seconds to hold idle connections.
    #[arg(long, default_value_t = 10.0)]
    hold_s: f64,
    /// Label for the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.subscribers > 0 && args.channels > 0 && args.publishers > 0,
        "counts must be positive"
    );
    anyhow::ensure!(
        args.threads > 0 && args.batch > 0,
        "threads and batch must be positive"
    );
    anyhow::ensure!(
        !(args.raw && args.proto == proto::Proto::Nats),
        "--raw speaks RESP to its subscribers; it cannot be combined with --proto nats"
    );
    if let Some(n) = args.idle_conns {
        return idle(&args, n);
    }
    let shared = Arc::new(Shared::new(args.channels, args.threads));
    let payload = args.payload.max(payload::HEADER_LEN);

    let (target, raw_thread) = if args.raw {
        let broker = raw::RawBroker::bind()?;
        let addr = broker.addr()?;
        let sh = shared.clone();
        let plan = raw::RawPlan {
            subscribers: args.subscribers,
            channels: args.channels,
            payload,
            window: args.window,
            rate: args.rate,
            cpu: args.raw_cpu,
        };
        // Named so scripts can find its CPU time in /proc/<pid>/task/*/comm.
        let t = std::thread::Builder::new()
            .name("raw-sender".into())
            .spawn(move || broker.run(plan, sh))?;
        (addr, Some(t))
    } else {
        (args.target, None)
    };

    // Subscribers, spread over threads.
    let mut per_thread: Vec<Vec<usize>> = vec![Vec::new(); args.threads];
    for i in 0..args.subscribers {
        per_thread[i % args.threads].push(i % args.channels);
    }
    let mut sub_threads = Vec::new();
    for (t, chans) in per_thread.into_iter().enumerate() {
        // Nothing received yet: the window starts closed-loop from zero (u64::MAX would mean
        // "no subscriber here" and let publishers run ahead until the first delivery).
        for &c in &chans {
            shared.acked[t][c].store(0, Ordering::Release);
        }
        let st = subscribers::SubscriberThread::connect(
            args.proto,
            target,
            &chans,
            args.channels,
            args.publishers,
            t,
        )?;
        let sh = shared.clone();
        sub_threads.push(std::thread::spawn(move || {
            st.run(sh, Duration::from_secs(3))
        }));
    }

    // Publishers (none in raw mode: the raw sender publishes).
    let mut pub_threads = Vec::new();
    if !args.raw {
        for p in 0..args.publishers {
            let channels: Vec<usize> = if args.publishers <= args.channels {
                (0..args.channels)
                    .filter(|c| c % args.publishers == p)
                    .collect()
            } else {
                vec![p % args.channels]
            };
            let plan = publishers::PublisherPlan {
                index: p as u32,
                channels,
                payload,
                window: args.window,
                rate: args.rate.map(|r| r / args.publishers as f64),
                batch: args.batch,
                proto: args.proto,
            };
            let sh = shared.clone();
            pub_threads.push(std::thread::spawn(move || {
                publishers::run(target, plan, sh)
            }));
        }
    }

    let total_published = |s: &Shared| {
        s.published
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .sum::<u64>()
    };
    let started = Instant::now();
    let warmup = Duration::from_secs_f64(args.warmup_s);
    let measure = Duration::from_secs_f64(args.duration_s);
    let mut last = (started, 0u64);
    let mut published_at_start = 0;
    let mut measuring = false;
    while started.elapsed() < warmup + measure {
        std::thread::sleep(Duration::from_millis(100));
        if !measuring && started.elapsed() >= warmup {
            measuring = true;
            shared
                .measure_from_ns
                .store(payload::now_ns(), Ordering::Release);
            published_at_start = total_published(&shared);
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let p = total_published(&shared);
            let secs = last.0.elapsed().as_secs_f64();
            eprintln!(
                "[{:>5.1}s] published {:>12.0}/s{}",
                started.elapsed().as_secs_f64(),
                (p - last.1) as f64 / secs,
                if measuring { "" } else { "  (warm-up)" }
            );
            last = (Instant::now(), p);
        }
    }
    let published_in_window = total_published(&shared) - published_at_start;
    shared.stop.store(true, Ordering::Release);
    for t in pub_threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
    }
    let raw_sockets = match raw_thread {
        Some(t) => {
            t.join()
                .map_err(|_| anyhow::anyhow!("raw sender panicked"))??
                .1
        }
        None => Vec::new(),
    };
    shared.senders_done.store(true, Ordering::Release);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut delivered, mut lost, mut duplicated, mut reordered, mut delivered_total) =
        (0, 0, 0, 0, 0);
    for t in sub_threads {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("subscriber thread panicked"))??;
        delivered += r.delivered;
        delivered_total += r.delivered_total;
        lost += r.lost;
        duplicated += r.duplicated;
        reordered += r.reordered;
        latency.add(&r.latency)?;
    }
    drop(raw_sockets);
    let published_total = total_published(&shared);
    let secs = args.duration_s;
    let q = |p: f64| latency.value_at_quantile(p);
    eprintln!(
        "{}: published {:.0}/s, delivered {:.0}/s, lost {lost}, duplicated {duplicated}, reordered {reordered}; latency µs p50 {} p90 {} p99 {} p99.9 {} max {}",
        if args.raw { "raw".to_string() } else { target.to_string() },
        published_in_window as f64 / secs,
        delivered as f64 / secs,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        latency.max()
    );
    if args.json {
        let v = json!({
            "label": args.label,
            "target": if args.raw { "raw".to_string() } else { target.to_string() },
            "subscribers": args.subscribers,
            "channels": args.channels,
            "publishers": args.publishers,
            "payload": payload,
            "window": args.window,
            "rate": args.rate,
            "duration_s": secs,
            "published_per_s": published_in_window as f64 / secs,
            "delivered_per_s": delivered as f64 / secs,
            "published_total": published_total,
            "delivered_total": delivered_total,
            "lost": lost,
            "duplicated": duplicated,
            "reordered": reordered,
            "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": latency.max(), "count": latency.len()},
            "latency_curve_us": CURVE_PERCENTILES
                .iter()
                .map(|&p| json!([p, if p >= 100.0 { latency.max() } else { q(p / 100.0) }]))
                .collect::<Vec<_>>(),
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{v}")?;
    }
    Ok(())
}

/// Percentiles of the latency curve in the JSON line (for percentile plots: the tail is
/// where brokers differ, so it is sampled densely).
const CURVE_PERCENTILES: [f64; 14] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

/// Holds `n` idle subscribed connections (memory per connection).
fn idle(args: &Args, n: usize) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = std::net::TcpStream::connect(args.target)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        args.proto.handshake(&mut s)?;
        let mut sub = Vec::new();
        args.proto.subscribe(&mut sub, &format!("idle.{i}"), 1);
        s.write_all(&sub)?;
        conns.push(s);
        // Confirm in batches to keep the pipe moving without a round trip per connection.
        if conns.len() % 256 == 0 || i + 1 == n {
            let from = conns.len()
                - if conns.len() % 256 == 0 {
                    256
                } else {
                    conns.len() % 256
                };
            for c in &mut conns[from..] {
                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut buf = [0u8; 128];
                let k = c.read(&mut buf)?;
                anyhow::ensure!(k > 0, "broker closed an idle connection");
            }
        }
    }
    eprintln!(
        "holding {n} idle subscribed connections for {}s",
        args.hold_s
    );
    if args.json {
        println!("{}", json!({"label": args.label, "idle_conns": n}));
    }
    std::thread::sleep(Duration::from_secs_f64(args.hold_s));
    Ok(())
}
