//! The reconnect storm (`--storm-at-s`): what the SSE threads recorded, and `/healthz`
//! polled on a separate connection while the clients reconnect.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::http::{find, get_request, parse_head};
use crate::payload::now_ns;
use crate::shared::Shared;
use crate::web::{WebShared, WebStats};

/// Interval between `/healthz` requests during the storm.
pub const HEALTHZ_EVERY: Duration = Duration::from_millis(10);

/// What the `/healthz` poller measured.
pub struct Health {
    /// µs from each request's scheduled time (every [`HEALTHZ_EVERY`] from the cut) to its
    /// complete answer: a slow answer delays the next requests, and their wait counts.
    pub latency_us: Histogram<u64>,
    /// Requests answered with 200.
    pub ok: u64,
    /// Requests that failed (connection refused or reset, timeout, status other than 200).
    pub errors: u64,
}

/// Polls `GET /healthz` on `target` every [`HEALTHZ_EVERY`] from `from_ns` until every
/// thread has cut its connections and every cut connection is subscribed again, or
/// `shared.stop`.
pub fn poll_healthz(
    target: SocketAddr,
    from_ns: u64,
    threads: usize,
    web: Arc<WebShared>,
    shared: Arc<Shared>,
) -> anyhow::Result<Health> {
    let mut h = Health {
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        ok: 0,
        errors: 0,
    };
    let host = target.to_string();
    let mut conn: Option<TcpStream> = None;
    let mut req = Vec::new();
    get_request(&mut req, &host, "/healthz");
    let mut buf = Vec::new();
    let every = HEALTHZ_EVERY.as_nanos() as u64;
    for k in 0u64.. {
        let due = from_ns + k * every;
        let now = now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        if shared.stop.load(Ordering::Acquire)
            || (web.storm_threads_cut.load(Ordering::Acquire) >= threads
                && web.storm_resubscribed.load(Ordering::Acquire)
                    >= web.storm_cut.load(Ordering::Acquire))
        {
            break;
        }
        let answered = (|| -> anyhow::Result<bool> {
            if conn.is_none() {
                let s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                conn = Some(s);
                buf.clear();
            }
            let s = conn.as_mut().expect("just connected");
            s.write_all(&req)?;
            let (status, keep) = read_response(s, &mut buf)?;
            if !keep {
                conn = None;
            }
            Ok(status == 200)
        })();
        let done = now_ns();
        match answered {
            Ok(true) => {
                h.ok += 1;
                h.latency_us
                    .saturating_record((done.saturating_sub(due) / 1000).max(1));
            }
            Ok(false) => h.errors += 1,
            Err(_) => {
                h.errors += 1;
                conn = None;
            }
        }
    }
    Ok(h)
}

/// Reads one response; returns its status and whether the connection stays open.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<(u16, bool)> {
    let mut tmp = [0u8; 4096];
    let mut fill = |s: &mut TcpStream, buf: &mut Vec<u8>| -> anyhow::Result<bool> {
        loop {
            match s.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    };
    let head = loop {
        if let Some(h) = parse_head(buf).map_err(anyhow::Error::msg)? {
            break h;
        }
        anyhow::ensure!(fill(s, buf)?, "closed before the response head");
    };
    let end = if let Some(n) = head.content_length {
        while buf.len() < head.len + n {
            anyhow::ensure!(fill(s, buf)?, "closed in the response body");
        }
        head.len + n
    } else if head.chunked {
        loop {
            if let Some(at) = find(&buf[head.len..], b"0\r\n\r\n") {
                break head.len + at + 5;
            }
            anyhow::ensure!(fill(s, buf)?, "closed in the response body");
        }
    } else {
        while fill(s, buf)? {}
        return Ok((head.status, false));
    };
    buf.drain(..end);
    Ok((head.status, !head.close))
}

/// The storm's summary line and JSON object.
pub fn report(
    web: &WebShared,
    st: &WebStats,
    health: Option<&Health>,
    storm_at_ns: u64,
) -> (String, Value) {
    let cut = web.storm_cut.load(Ordering::Acquire);
    let resub = web.storm_resubscribed.load(Ordering::Acquire);
    let cut_ns = st.storm_cut_ns.unwrap_or(storm_at_ns);
    let all_ms = (cut > 0 && resub >= cut)
        .then(|| st.storm_last_resub_ns.saturating_sub(cut_ns) as f64 / 1e6);
    let r = &st.storm_resub_us;
    let resub_ms = |q: f64| r.value_at_quantile(q) as f64 / 1000.0;
    let secs = |ns: u64| ns.saturating_sub(web.started_ns) as f64 / 1e9;
    let retry: Vec<Value> = st
        .retry_by_s
        .iter()
        .enumerate()
        .filter_map(|(s, e)| {
            e.map(|(lo, hi, n)| json!({"t_s": s, "min_ms": lo, "max_ms": hi, "count": n}))
        })
        .collect();
    let retry_text: Vec<String> = st
        .retry_by_s
        .iter()
        .enumerate()
        .filter_map(|(s, e)| e.map(|(lo, hi, _)| format!("{s}s:{lo}-{hi}")))
        .collect();
    let health_json = health.map(|h| {
        let l = &h.latency_us;
        json!({"requests_ok": h.ok, "errors": h.errors, "p50": l.value_at_quantile(0.5), "p99": l.value_at_quantile(0.99), "max": l.max()})
    });
    let health_text = health.map_or_else(
        || "no /healthz samples".to_string(),
        |h| {
            let l = &h.latency_us;
            format!(
                "/healthz µs p50 {} p99 {} max {} over {} answers ({} errors)",
                l.value_at_quantile(0.5),
                l.value_at_quantile(0.99),
                l.max(),
                h.ok,
                h.errors
            )
        },
    );
    let text = format!(
        "storm: cut {cut} at {:.3}s, {resub} resubscribed, all after {} (per connection ms p50 {:.1} p99 {:.1} max {:.1}); after resume missed {} duplicated {}, resets {} (skipping {}); retry advice by second (min-max ms) [{}]; {health_text}",
        secs(cut_ns),
        all_ms.map_or_else(|| "never".to_string(), |ms| format!("{ms:.1} ms")),
        resub_ms(0.5),
        resub_ms(0.99),
        r.max() as f64 / 1000.0,
        st.resume_missed,
        st.resume_duplicated,
        st.resets,
        st.reset_missed,
        retry_text.join(" "),
    );
    let v = json!({
        "cut": cut,
        "cut_at_s": secs(cut_ns),
        "resubscribed": resub,
        "all_resubscribed_ms": all_ms,
        "resubscribe_ms": {"p50": resub_ms(0.5), "p99": resub_ms(0.99), "max": r.max() as f64 / 1000.0},
        "missed_after_resume": st.resume_missed,
        "duplicated_after_resume": st.resume_duplicated,
        "resets": st.resets,
        "missed_by_resets": st.reset_missed,
        "retry_advice": retry,
        "healthz_us": health_json,
    });
    (text, v)
}
