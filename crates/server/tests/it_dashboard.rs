//! The live dashboard, `GET /dashboard`: the page is served whole (and HEAD gives its head
//! alone), and headless Chromium (Debian `chromium`), driven over the DevTools protocol by
//! the small WebSocket client of `support`, loads it while a load runs: no console error,
//! no exception, no failed or foreign request; every chart has data points, the message
//! rates are not zero; selecting a shard redraws; the page says so when `/stats` stops
//! answering. The test keeps a screenshot of the page; `CORECAST_UPDATE_SCREENSHOT=1` writes
//! it to `docs/dashboard.png` after a longer, livelier load (about 80 s: publish rates that
//! swing, WebSocket and SSE subscribers, slow consumers cut off now and then). Run it on a
//! release build for realistic latencies:
//!
//! ```sh
//! CORECAST_UPDATE_SCREENSHOT=1 cargo test --release -p corecast-server --test it_dashboard
//! ```

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{HttpConn, RespConn, Server, WsClient, WS_ACCEPT, WS_KEY};

/// The page's size budget: it is compiled into the binary.
const MAX_PAGE_BYTES: usize = 40 * 1024;

/// One request on its own connection (`Connection: close`), then `then` on the same one;
/// returns everything the server sent.
fn exchange_raw(addr: SocketAddr, method: &str, then: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} /dashboard HTTP/1.1\r\nHost: test\r\n\r\n{then}"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read http response");
    String::from_utf8(out).expect("UTF-8 response")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[test]
fn dashboard_is_one_self_contained_page_and_head_has_no_body() {
    let server = Server::start(1, &[]);
    let close = "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

    let got = exchange_raw(server.http, "GET", close);
    let (head, rest) = got.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        header(head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(head, "cache-control"), Some("no-store"));
    // Security headers: no sniffing, no framing, and a policy that allows the page's own
    // inline script (by hash) and fetches to its own origin, nothing else.
    assert_eq!(header(head, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(head, "x-frame-options"), Some("DENY"));
    let csp = header(head, "content-security-policy").expect("a Content-Security-Policy");
    for directive in [
        "default-src 'none'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{directive:?} missing from {csp:?}"
        );
    }
    let script = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src "))
        .expect("script-src");
    assert!(
        script.starts_with("script-src 'sha256-") && !script.contains("unsafe"),
        "{script}"
    );
    let len: usize = header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    let (page, after) = rest.split_at(len);
    assert!(after.starts_with("HTTP/1.1 200 OK\r\n"), "{after}");
    assert!(after.ends_with("\r\n\r\nok\n"), "{after}");

    assert!(len < MAX_PAGE_BYTES, "the page is {len} bytes");
    assert!(page.starts_with("<!doctype html>"), "{}", &page[..80]);
    assert!(page.trim_end().ends_with("</html>"));
    // Self-contained: no address of anything anywhere (CDN, fonts, scripts), no external
    // script or style sheet; /stats is fetched by a relative URL (works behind a prefix).
    for banned in ["://", "src=", "@import", "url(", "rel=\"stylesheet\""] {
        assert!(!page.contains(banned), "the page contains {banned:?}");
    }
    assert!(
        page.contains("fetch('stats'"),
        "stats is not fetched relatively"
    );

    // HEAD: the same head, no body: the next response follows at once.
    let got = exchange_raw(server.http, "HEAD", close);
    let (head_only, rest) = got.split_once("\r\n\r\n").expect("a response head");
    assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"), "{head_only}");
    for h in [
        "content-type",
        "cache-control",
        "content-length",
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
    ] {
        assert_eq!(header(head_only, h), header(head, h), "{h}");
    }
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.ends_with("\r\n\r\nok\n"),
        "HEAD /dashboard sent a body: {rest:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The load: RESP publishers and RESP, WebSocket and SSE subscribers, until stopped.

struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<()>)>,
}

const CHANNELS: [&str; 4] = ["dash.a", "dash.b", "dash.c", "dash.d"];

impl Load {
    /// `lively`: publish rates that swing, and a slow consumer every few seconds.
    fn start(server: &Server, lively: bool) -> Load {
        let mut load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for i in 0..6 {
            let mut c = RespConn::connect(server.resp);
            let (a, b) = (CHANNELS[i % 4], CHANNELS[(i + 1) % 4]);
            c.cmd(&[b"SUBSCRIBE", a.as_bytes(), b.as_bytes()]);
            c.read_replies(2);
            load.spawn(format!("RESP subscriber {i}"), move |stop| {
                drain(c.stream, &stop)
            });
        }
        for (i, ch) in CHANNELS.iter().take(2).enumerate() {
            let mut ws = WsClient::connect(server.http);
            ws.sub(ch, 1);
            load.spawn(format!("WebSocket subscriber {i}"), move |stop| {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(f) = ws.frame_within(Duration::from_millis(100)) {
                        if f.opcode == 9 {
                            ws.send_frame(10, true, &f.payload);
                        }
                    }
                }
            });
        }
        for (i, ch) in CHANNELS.iter().skip(2).enumerate() {
            let mut h = HttpConn::connect(server.http);
            let r =
                h.exchange(format!("GET /sse?ch={ch} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
            assert_eq!(r.status, 200, "{r:?}");
            load.spawn(format!("SSE subscriber {i}"), move |stop| {
                drain(h.stream, &stop)
            });
        }
        for p in 0..2 {
            let mut c = RespConn::connect(server.resp);
            load.spawn(format!("publisher {p}"), move |stop| {
                publish(&mut c, p, lively, &stop)
            });
        }
        if lively {
            let addr = server.resp;
            load.spawn("slow consumers".into(), move |stop| {
                slow_consumers(addr, &stop)
            });
        }
        load
    }

    fn spawn(&mut self, what: String, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.threads
            .push((what, std::thread::spawn(move || f(stop))));
    }

    /// Stops every thread; a thread that panicked fails the test.
    fn stop(mut self) {
        let failed = self.join();
        assert!(
            failed.is_empty(),
            "the load's {} failed (see the panics above)",
            failed.join(", ")
        );
    }

    /// Stops and joins every thread; returns those that panicked.
    fn join(&mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.threads);
        threads
            .into_iter()
            .filter_map(|(what, t)| t.join().is_err().then_some(what))
            .collect()
    }
}

impl Drop for Load {
    /// Stops the load before the server goes (locals drop in reverse order), so a failed
    /// assertion is not buried under the load's own complaints about a closed server.
    fn drop(&mut self) {
        self.join();
    }
}

/// Reads and discards until stopped (or the server closes).
fn drain(mut stream: TcpStream, stop: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Pipelined PUBLISH batches on all channels, paced to a rate (swinging when `lively`).
fn publish(c: &mut RespConn, p: usize, lively: bool, stop: &AtomicBool) {
    const BATCH: usize = 20;
    let started = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let secs = started.elapsed().as_secs_f64();
        let rate = if lively {
            // msg/s of this publisher: a slow swing, the second publisher out of phase.
            let phase = secs / 45.0 * std::f64::consts::TAU + p as f64 * 2.0;
            3000.0 + 1800.0 * phase.sin()
        } else {
            1500.0
        };
        let mut batch = Vec::with_capacity(BATCH * 300);
        for _ in 0..BATCH {
            n += 1;
            let ch = CHANNELS[(n as usize + p) % 4];
            let payload = format!(
                "{{\"publisher\":{p},\"n\":{n},\"pad\":\"{}\"}}",
                "x".repeat(160)
            );
            batch.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{ch}\r\n${}\r\n{payload}\r\n",
                    ch.len(),
                    payload.len()
                )
                .as_bytes(),
            );
        }
        c.send(&batch);
        c.read_replies(BATCH);
        std::thread::sleep(Duration::from_secs_f64(BATCH as f64 / rate));
    }
}

/// Every 10 s, a subscriber to every channel that never reads, with a small receive buffer:
/// the server cuts it off once `--max-pending-bytes` are queued for it.
fn slow_consumers(addr: SocketAddr, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        sock.connect(&addr.into()).expect("connect");
        let mut c = RespConn::from(TcpStream::from(sock));
        let mut argv: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        argv.extend(CHANNELS.iter().map(|c| c.as_bytes()));
        c.cmd(&argv);
        for _ in 0..100 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Headless Chromium and the DevTools protocol.

/// Chromium in its own process group (killed whole when dropped), with a fresh profile,
/// under `timeout`, resolving no host name (nothing leaves the machine).
struct Browser {
    child: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl Browser {
    fn start(limit: Duration) -> Browser {
        support::require("Debian's chromium", "chromium", &["--version"]);
        let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id());
        let tag: String = tag.chars().filter(char::is_ascii_alphanumeric).collect();
        let profile = std::env::temp_dir().join(format!("corecast-dashboard-{tag}"));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("profile dir");
        let log = std::env::temp_dir().join(format!("corecast-dashboard-{tag}.log"));
        let stderr = std::fs::File::create(&log).expect("browser log");
        let child = Command::new("timeout")
            .arg(limit.as_secs().to_string())
            .arg("chromium")
            .args(support::CHROMIUM_ARGS)
            .args([
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium ({e}): run scripts/test.sh"));
        Browser {
            child,
            profile,
            log,
        }
    }

    /// The browser's DevTools endpoint: port and path, from `DevToolsActivePort`.
    fn endpoint(&mut self) -> (SocketAddr, String) {
        let file = self.profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                if let Ok(port) = port.trim().parse::<u16>() {
                    return (SocketAddr::from(([127, 0, 0, 1], port)), path.trim().into());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created for its own child.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        if std::thread::panicking() {
            eprintln!("chromium stderr kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A DevTools connection: commands with ids, events kept in order.
struct Cdp {
    ws: WsClient,
    next_id: u64,
    session: Option<String>,
    events: Vec<Value>,
}

impl Cdp {
    fn connect(addr: SocketAddr, path: &str) -> Cdp {
        let mut conn = HttpConn::connect(addr);
        // Chromium takes a DevTools connection only with an IP or localhost as Host.
        let r = conn.exchange(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 101, "DevTools refused the WebSocket: {r:?}");
        assert_eq!(r.header("sec-websocket-accept"), Some(WS_ACCEPT));
        Cdp {
            ws: conn.into_ws(),
            next_id: 1,
            session: None,
            events: Vec::new(),
        }
    }

    /// The next whole message, if one arrives within `within`.
    fn message(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        let mut data = Vec::new();
        loop {
            let f = self
                .ws
                .frame_within(deadline.saturating_duration_since(Instant::now()))?;
            match f.opcode {
                0..=2 => {
                    data.extend_from_slice(&f.payload);
                    if f.fin {
                        return Some(serde_json::from_slice(&data).expect("DevTools JSON"));
                    }
                }
                8 => panic!("DevTools closed the connection: {:?}", f.close_code()),
                9 => {
                    self.ws.send_frame(10, true, &f.payload);
                }
                _ => {}
            }
        }
    }

    /// Sends a command (to the attached page, once there is one) and returns its result;
    /// events that arrive meanwhile are kept.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut cmd = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            cmd["sessionId"] = json!(s);
        }
        self.ws.send_text(&cmd.to_string());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(m) = self.message(left) else {
                panic!("no answer to {method} within 20 s");
            };
            if m["id"] == id {
                if let Some(e) = m.get("error") {
                    panic!("{method} failed: {e}");
                }
                return m["result"].clone();
            }
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// Keeps events for `dur`.
    fn pump(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        while let Some(m) = self.message(deadline.saturating_duration_since(Instant::now())) {
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// Evaluates `expr` in the page and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {expr} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// `window.dashboardState`.
    fn state(&mut self) -> Value {
        let text = self.eval("JSON.stringify(window.dashboardState || null)");
        serde_json::from_str(text.as_str().unwrap_or("null")).expect("state JSON")
    }
}

/// Console errors, exceptions, failed or refused requests, and requests to anything but
/// `origin`, among `events`.
fn problems(events: &[Value], origin: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or_default() {
            "Runtime.exceptionThrown" => out.push(format!("exception: {}", p["exceptionDetails"])),
            "Runtime.consoleAPICalled"
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                out.push(format!("console.{}: {}", p["type"], p["args"]))
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                out.push(format!("log error: {}", p["entry"]))
            }
            "Network.loadingFailed" => out.push(format!("request failed: {p}")),
            "Network.responseReceived" if p["response"]["status"].as_u64() >= Some(400) => out
                .push(format!(
                    "HTTP {} for {}",
                    p["response"]["status"], p["response"]["url"]
                )),
            "Network.requestWillBeSent" => {
                let url = p["request"]["url"].as_str().unwrap_or_default();
                if !url.starts_with(origin) && !url.starts_with("data:") {
                    out.push(format!("request to another origin: {url}"));
                }
            }
            _ => {}
        }
    }
    out
}

/// Standard base64 (DevTools sends screenshots so).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbA=="), b"hell");
    assert_eq!(base64_decode("aGVs"), b"hel");
}

/// The page's state once `pred` holds (bounded), keeping DevTools events meanwhile.
fn wait_state(cdp: &mut Cdp, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = cdp.state();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; dashboardState: {s}; problems: {:?}",
            problems(&cdp.events, "")
        );
        cdp.pump(Duration::from_millis(250));
    }
}

fn chart_points(s: &Value) -> Vec<(String, u64)> {
    s["charts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["points"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn drawn(s: &Value) -> bool {
    let charts = chart_points(s);
    s["ok"] == true
        && s["samples"].as_u64() >= Some(3)
        && charts.len() == 7
        && charts.iter().all(|(_, n)| *n > 0)
}

#[test]
fn dashboard_in_headless_chromium_charts_a_live_load() {
    let update = std::env::var("CORECAST_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1");
    // Seconds of load before the screenshot.
    let run = if update { 80 } else { 0 };
    let mut browser = Browser::start(Duration::from_secs(60 + run));
    let extra: &[&str] = if update {
        &["--max-bulk-len", "65536", "--max-pending-bytes", "262144"]
    } else {
        &[]
    };
    let mut server = Server::start(2, extra);
    let load = Load::start(&server, update);

    let (devtools, path) = browser.endpoint();
    let mut cdp = Cdp::connect(devtools, &path);
    let target = cdp.call("Target.createTarget", json!({"url": "about:blank"}));
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    cdp.session = Some(attached["sessionId"].as_str().expect("sessionId").into());
    for domain in ["Runtime", "Log", "Network", "Page"] {
        cdp.call(&format!("{domain}.enable"), json!({}));
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );
    cdp.call(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
    );
    let origin = format!("http://{}/", server.http);
    let nav = cdp.call(
        "Page.navigate",
        json!({"url": format!("{origin}dashboard")}),
    );
    assert!(nav.get("errorText").is_none(), "navigation failed: {nav}");

    // Data points in every chart, and messages flowing in and out.
    let state = wait_state(
        &mut cdp,
        "charts with data and nonzero rates",
        Duration::from_secs(15),
        |s| {
            drawn(s)
                && s["rates"]["published"].as_f64() > Some(0.0)
                && s["rates"]["delivered"].as_f64() > Some(0.0)
        },
    );
    assert_eq!(state["shards"], 2, "{state}");
    assert_eq!(state["failures"], 0, "{state}");
    assert!(state["series"].as_u64() >= Some(12), "{state}");
    assert_eq!(
        cdp.eval("[document.getElementById('status').textContent, document.getElementById('banner').hidden]"),
        json!(["live", true])
    );

    // A shard of its own: the nav selects it and the charts redraw from its numbers.
    cdp.eval("document.querySelector('nav button[data-sel=\"1\"]').click()");
    let s = wait_state(&mut cdp, "shard 1 charted", Duration::from_secs(5), |s| {
        s["selected"] == 1 && drawn(s)
    });
    assert!(s["polls"].as_u64() >= state["polls"].as_u64(), "{s}");
    cdp.eval("document.querySelector('nav button[data-sel=\"-1\"]').click()");
    wait_state(
        &mut cdp,
        "the total charted again",
        Duration::from_secs(5),
        |s| s["selected"] == -1 && drawn(s),
    );

    // Hovering a chart shows the values under the pointer; a legend entry hides its line.
    let at = cdp.eval(
        "(() => { const r = document.getElementById('cv-rate').getBoundingClientRect(); \
         return [r.x + r.width * 0.97, r.y + r.height / 2]; })()",
    );
    let mouse = |cdp: &mut Cdp, x: &Value, y: &Value| {
        cdp.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": x, "y": y}),
        );
    };
    mouse(&mut cdp, &at[0], &at[1]);
    let tip = cdp.eval(
        "[document.getElementById('tip').hidden, document.getElementById('tip').textContent]",
    );
    assert_eq!(tip[0], false, "no tooltip: {tip}");
    assert!(
        tip[1]
            .as_str()
            .is_some_and(|t| t.contains("out (delivered)")),
        "{tip}"
    );
    mouse(&mut cdp, &json!(2), &json!(2));
    assert_eq!(cdp.eval("document.getElementById('tip').hidden"), true);
    let before = cdp.state()["charts"]["rate"]["series"].clone();
    cdp.eval("document.querySelector('#lg-rate .lg').click()");
    assert_eq!(
        cdp.state()["charts"]["rate"]["series"],
        json!(1),
        "{before}"
    );
    cdp.eval("document.querySelector('#lg-rate .lg').click()");
    assert_eq!(cdp.state()["charts"]["rate"]["series"], before);

    if update {
        let until = Instant::now() + Duration::from_secs(run);
        while Instant::now() < until {
            cdp.pump(Duration::from_secs(1));
        }
    }
    let found = problems(&cdp.events, &origin);
    assert!(
        found.is_empty(),
        "the page had problems (a Content-Security-Policy violation is a console error):\n{}",
        found.join("\n")
    );
    // The policy is enforced: a script injected into the page (as an XSS would) does not
    // run, while the page's own script above did.
    let ran = cdp.eval(
        "(() => { const s = document.createElement('script'); \
         s.textContent = 'window.__injected = 1'; document.body.appendChild(s); \
         return window.__injected === 1; })()",
    );
    assert_eq!(
        ran, false,
        "an injected inline script ran: no or a too loose CSP"
    );

    // The whole page, at a laptop's width.
    let height = cdp
        .eval("document.documentElement.scrollHeight")
        .as_u64()
        .expect("page height");
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1440, "height": height.clamp(600, 1400), "deviceScaleFactor": 1, "mobile": false}),
    );
    cdp.pump(Duration::from_millis(400)); // the page redraws 100 ms after a resize
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    if update {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
        std::fs::write(&out, &png).expect("write docs/dashboard.png");
        eprintln!("wrote {} ({} bytes)", out.display(), png.len());
    }

    // /stats stops answering: the page says so and keeps its charts.
    load.stop();
    let status = server.terminate().expect("corecast stopped");
    assert!(status.success(), "corecast exited with {status}");
    let s = wait_state(
        &mut cdp,
        "the unreachable state",
        Duration::from_secs(6),
        |s| s["ok"] == false && s["unreachableShown"] == true,
    );
    assert!(
        s["points"].as_u64() > Some(0),
        "the charts were cleared: {s}"
    );
    let shown = cdp.eval(
        "[document.getElementById('status').textContent, document.getElementById('banner').textContent]",
    );
    assert_eq!(shown[0], "stats unreachable", "{shown}");
    assert!(
        shown[1]
            .as_str()
            .is_some_and(|t| t.starts_with("Stats unreachable")),
        "{shown}"
    );
    drop(browser);
}
