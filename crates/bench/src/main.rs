//! `corecast-bench`: one load generator for corecast, redis-server, nats-server and the raw
//! ideal sender.
//!
//! N subscribers over C channels (subscriber i on channel i mod C), P publishers; closed loop
//! under a per-subscriber window by default, open loop with `--rate`. Prints a progress line
//! per second on stderr, a summary on stderr, and one JSON line on stdout with `--json`.
//!
//! Subscribers (`--sub-mode`):
//! - `native` (default): `--proto` (RESP or NATS) on `--target`.
//! - `ws`: WebSocket on `--http-target`. Against corecast (`--proto resp`): `GET /ws` and the
//!   native JSON protocol (`{"op":"sub",..}`, deliveries `{"ch":..,"seq":..,"data":..}`);
//!   with `--proto nats`: the NATS protocol over nats-server's websocket listener
//!   (`websocket { listen: "127.0.0.1:PORT" no_tls: true }`), publishers on `--target`.
//! - `sse`: Server-Sent Events, `GET /sse?ch=..` on `--http-target`, reconnecting as an
//!   EventSource does: after the last `retry:` advice (3000 ms if none) with
//!   `Last-Event-ID`. corecast only.
//!
//! Publishers always speak `--proto` on `--target`. With `ws`/`sse` against corecast the
//! payload is a JSON string (`"` + hex header + `.` padding + `"`, at least 50 bytes, exactly
//! `--payload`), so it arrives spliced into the envelope; otherwise it is binary.
//! Beyond the per-publisher accounting, ws/sse subscribers check the broker's per-channel
//! `seq` (gaps, repeats; separately on connections that have resumed) and count resets.
//!
//! `--storm-at-s T` (`sse`): T seconds into the measured run (or into `--hold-s` with
//! `--idle-conns`) every SSE connection is shut down and closed by the client at once, and
//! each reconnects as above. Reported: time from the cut until every connection has its
//! `200` head again (and per connection p50/p99/max), the `retry:` advice seen per second,
//! messages missed and duplicated after resume, and `/healthz` latency polled every 10 ms on
//! a separate connection from the cut until all are back.
//!
//! `--idle-conns N` holds N idle subscribed connections (each on its own channel `idle.<i>`)
//! for `--hold-s`; with `--sub-mode ws|sse` they are spread over `--threads` event loops that
//! answer pings and read heartbeats. The soft open-files limit is raised to the hard one.

mod accounting;
mod connect;
mod frames;
mod http;
mod json;
mod payload;
mod proto;
mod publishers;
mod raw;
mod shared;
mod sse;
mod storm;
mod subscribers;
mod web;
mod ws;

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
    /// How subscribers connect: native (--proto on --target), ws (WebSocket on
    /// --http-target) or sse (Server-Sent Events on --http-target).
    #[arg(long, value_enum, default_value_t = web::SubMode::Native)]
    sub_mode: web::SubMode,
    /// HTTP listener for ws/sse subscribers and /healthz (nats-server: its websocket port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_target: SocketAddr,
    /// With --sub-mode sse: cut every SSE connection at once this many seconds into the
    /// measured run (or the idle hold) and measure the reconnect storm.
    #[arg(long)]
    storm_at_s: Option<f64>,
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
    /// Payload bytes (at least 24: the timestamp/sequence header; 50 for the JSON string of
    /// ws/sse against corecast).
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
    /// Subscriber threads (also for idle ws/sse connections).
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
    let web_mode = args.sub_mode != web::SubMode::Native;
    anyhow::ensure!(
        !(args.raw && web_mode),
        "--raw serves RESP subscribers only; it cannot be combined with --sub-mode ws|sse"
    );
    anyhow::ensure!(
        !(args.sub_mode == web::SubMode::Sse && args.proto == proto::Proto::Nats),
        "--sub-mode sse is corecast's; nats-server has no SSE"
    );
    anyhow::ensure!(
        args.storm_at_s.is_none() || args.sub_mode == web::SubMode::Sse,
        "--storm-at-s needs --sub-mode sse"
    );
    raise_open_files_limit();
    if let Some(n) = args.idle_conns {
        if web_mode {
            return web_idle(&args, n);
        }
        return idle(&args, n);
    }
    let shared = Arc::new(Shared::new(args.channels, args.threads));
    let encoding = if web_mode && args.proto == proto::Proto::Resp {
        payload::Encoding::JsonString
    } else {
        payload::Encoding::Binary
    };
    let payload = args.payload.max(encoding.min_len());
    let web_shared = Arc::new(web::WebShared::new());

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
    let mut sub_threads: Vec<std::thread::JoinHandle<SubOutcome>> = Vec::new();
    for (t, chans) in per_thread.into_iter().enumerate() {
        // Nothing received yet: the window starts closed-loop from zero (u64::MAX would mean
        // "no subscriber here" and let publishers run ahead until the first delivery).
        for &c in &chans {
            shared.acked[t][c].store(0, Ordering::Release);
        }
        let sh = shared.clone();
        if web_mode {
            let plan = web::WebPlan {
                mode: args.sub_mode,
                nats: args.proto == proto::Proto::Nats,
                target: args.http_target,
                encoding,
                publishers: args.publishers,
                channels: args.channels,
                thread_index: t,
                idle: false,
            };
            let names: Vec<u32> = chans.iter().map(|&c| c as u32).collect();
            let wt = web::WebThread::new(plan, &names, sh, web_shared.clone())?;
            sub_threads.push(std::thread::spawn(move || {
                wt.run(Duration::from_secs(3)).map(|(r, w)| (r, Some(w)))
            }));
        } else {
            let st = subscribers::SubscriberThread::connect(
                args.proto,
                target,
                &chans,
                args.channels,
                args.publishers,
                t,
            )?;
            sub_threads.push(std::thread::spawn(move || {
                st.run(sh, Duration::from_secs(3)).map(|r| (r, None))
            }));
        }
    }
    if web_mode {
        sub_threads = wait_ready(&web_shared, args.subscribers, sub_threads)?;
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
                encoding,
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
    let mut storm: Option<(u64, std::thread::JoinHandle<anyhow::Result<storm::Health>>)> = None;
    while started.elapsed() < warmup + measure {
        std::thread::sleep(Duration::from_millis(100));
        if !measuring && started.elapsed() >= warmup {
            measuring = true;
            let from = payload::now_ns();
            shared.measure_from_ns.store(from, Ordering::Release);
            published_at_start = total_published(&shared);
            if let Some(t) = args.storm_at_s {
                storm = Some(start_storm(&args, from, t, &web_shared, &shared));
            }
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
    let mut web_stats = web::WebStats::empty();
    for t in sub_threads {
        let (r, w) = t
            .join()
            .map_err(|_| anyhow::anyhow!("subscriber thread panicked"))??;
        if let Some(w) = w {
            web_stats.merge(&w)?;
        }
        delivered += r.delivered;
        delivered_total += r.delivered_total;
        lost += r.lost;
        duplicated += r.duplicated;
        reordered += r.reordered;
        latency.add(&r.latency)?;
    }
    drop(raw_sockets);
    let storm_report = finish_storm(storm, &web_shared, &web_stats)?;
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
    if web_mode {
        eprintln!("{}", web_text(&web_stats));
    }
    if let Some((text, _)) = &storm_report {
        eprintln!("{text}");
    }
    if args.json {
        let mut v = json!({
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
            "sub_mode": format!("{:?}", args.sub_mode).to_lowercase(),
        });
        if web_mode {
            v["web"] = web_json(&web_stats);
        }
        if let Some((_, s)) = storm_report {
            v["storm"] = s;
        }
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

/// What a subscriber thread returns: its accounting and, for ws/sse, the rest.
type SubOutcome = anyhow::Result<(subscribers::SubResult, Option<web::WebStats>)>;

/// Waits until `want` ws/sse subscribers are subscribed, printing progress; a thread that
/// fails ends the wait with its error.
fn wait_ready(
    web: &web::WebShared,
    want: usize,
    threads: Vec<std::thread::JoinHandle<SubOutcome>>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<SubOutcome>>> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let ready = web.ready.load(Ordering::Acquire);
        if ready >= want {
            return Ok(threads);
        }
        if let Some(k) = threads.iter().position(|t| t.is_finished()) {
            let mut threads = threads;
            let t = threads.swap_remove(k);
            t.join()
                .map_err(|_| anyhow::anyhow!("subscriber thread panicked"))??;
            anyhow::bail!("a subscriber thread ended before its connections were subscribed");
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "only {ready} of {want} subscribers subscribed after 300 s"
        );
        if last_print.elapsed() >= Duration::from_secs(1) {
            eprintln!("[setup] {ready}/{want} subscribed");
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Schedules the storm `t` seconds after `from_ns` and starts the `/healthz` poller.
fn start_storm(
    args: &Args,
    from_ns: u64,
    t: f64,
    web: &Arc<web::WebShared>,
    shared: &Arc<Shared>,
) -> (u64, std::thread::JoinHandle<anyhow::Result<storm::Health>>) {
    let at = from_ns + (t.max(0.0) * 1e9) as u64;
    web.storm_at_ns.store(at, Ordering::Release);
    let (target, threads, web, shared) =
        (args.http_target, args.threads, web.clone(), shared.clone());
    let h = std::thread::spawn(move || storm::poll_healthz(target, at, threads, web, shared));
    (at, h)
}

/// The storm's summary, if there was one.
fn finish_storm(
    storm: Option<(u64, std::thread::JoinHandle<anyhow::Result<storm::Health>>)>,
    web: &web::WebShared,
    st: &web::WebStats,
) -> anyhow::Result<Option<(String, serde_json::Value)>> {
    let Some((at, poller)) = storm else {
        return Ok(None);
    };
    let health = poller
        .join()
        .map_err(|_| anyhow::anyhow!("healthz poller panicked"))??;
    if web.storm_threads_cut.load(Ordering::Acquire) == 0 {
        eprintln!("storm: the run ended before the cut (--storm-at-s beyond --duration-s?)");
    }
    Ok(Some(storm::report(web, st, Some(&health), at)))
}

fn web_text(w: &web::WebStats) -> String {
    format!(
        "ws/sse: reconnects {}, connect failures {}, HTTP errors {}, resets {} (skipping {}); broker seq missed {} duplicated {} (after resume: missed {} duplicated {})",
        w.reconnects,
        w.connect_failures,
        w.http_errors,
        w.resets,
        w.reset_missed,
        w.seq_missed,
        w.seq_duplicated,
        w.resume_missed,
        w.resume_duplicated
    )
}

fn web_json(w: &web::WebStats) -> serde_json::Value {
    json!({
        "reconnects": w.reconnects,
        "connect_failures": w.connect_failures,
        "http_errors": w.http_errors,
        "resets": w.resets,
        "reset_missed": w.reset_missed,
        "seq_missed": w.seq_missed,
        "seq_duplicated": w.seq_duplicated,
        "resume_missed": w.resume_missed,
        "resume_duplicated": w.resume_duplicated,
    })
}

/// Holds `n` idle ws/sse connections spread over `--threads` event loops (each on its own
/// channel `idle.<i>`), with an optional storm `--storm-at-s` into the hold.
fn web_idle(args: &Args, n: usize) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(0, args.threads));
    let web_shared = Arc::new(web::WebShared::new());
    let setup = Instant::now();
    let mut threads = Vec::new();
    for t in 0..args.threads {
        let names: Vec<u32> = (t..n).step_by(args.threads).map(|i| i as u32).collect();
        let plan = web::WebPlan {
            mode: args.sub_mode,
            nats: args.proto == proto::Proto::Nats,
            target: args.http_target,
            encoding: payload::Encoding::Binary,
            publishers: 1,
            channels: 0,
            thread_index: t,
            idle: true,
        };
        let wt = web::WebThread::new(plan, &names, shared.clone(), web_shared.clone())?;
        threads.push(std::thread::spawn(move || -> SubOutcome {
            wt.run(Duration::ZERO).map(|(r, w)| (r, Some(w)))
        }));
    }
    let threads = wait_ready(&web_shared, n, threads)?;
    let setup_s = setup.elapsed().as_secs_f64();
    eprintln!(
        "holding {n} idle subscribed connections for {}s (subscribed in {setup_s:.2}s)",
        args.hold_s
    );
    let storm = args
        .storm_at_s
        .map(|t| start_storm(args, payload::now_ns(), t, &web_shared, &shared));
    std::thread::sleep(Duration::from_secs_f64(args.hold_s));
    shared.stop.store(true, Ordering::Release);
    let mut st = web::WebStats::empty();
    for t in threads {
        let (_, w) = t
            .join()
            .map_err(|_| anyhow::anyhow!("subscriber thread panicked"))??;
        if let Some(w) = w {
            st.merge(&w)?;
        }
    }
    let storm_report = finish_storm(storm, &web_shared, &st)?;
    eprintln!("{}", web_text(&st));
    if let Some((text, _)) = &storm_report {
        eprintln!("{text}");
    }
    if args.json {
        let mut v = json!({
            "label": args.label,
            "idle_conns": n,
            "sub_mode": format!("{:?}", args.sub_mode).to_lowercase(),
            "setup_s": setup_s,
            "web": web_json(&st),
        });
        if let Some((_, s)) = storm_report {
            v["storm"] = s;
        }
        println!("{v}");
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one (15,000 idle connections need it).
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer; setrlimit gets the values getrlimit returned.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
