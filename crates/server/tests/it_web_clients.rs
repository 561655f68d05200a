//! WebSocket, SSE and HTTP publish with clients nobody here wrote: Python `websockets` and
//! `sseclient-py` (PyPI), Node `ws` and `eventsource` (npm), and headless Chromium's own
//! `WebSocket` and `EventSource` (Debian `chromium`). `.ci/run` installs them all; a missing
//! one fails its test with a message saying so, never a silent skip.
//!
//! The client scripts in `tests/web/` are thin: they are driven with one JSON command a line
//! on stdin and report everything they see as one JSON object a line on stdout, so every
//! expectation lives here. Resumes after a dropped connection go through [`CutProxy`], a TCP
//! proxy in front of corecast's HTTP port that the test cuts and holds: the clients see their
//! connection drop and reconnect by themselves while corecast (and its in-memory history)
//! keeps running. Everything is on 127.0.0.1 and every wait is bounded.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{http_post, require, RespConn, Server};

/// How long one expected event may take.
const WAIT: Duration = Duration::from_secs(10);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

// ---------------------------------------------------------------------------------------
// Preflight: a missing tool fails the test and says how to get it.

/// `check` is Python that fails without the package (an import, maybe an attribute).
fn require_python(check: &str, package: &str) {
    require(
        &format!("the Python package {package}"),
        "python3",
        &["-c", check],
    );
}

fn require_node() {
    require("Node.js", "node", &["--version"]);
    let modules = web_dir().join("node/node_modules");
    for pkg in ["ws", "eventsource"] {
        assert!(
            modules.join(pkg).join("package.json").is_file(),
            "the npm package {pkg} is missing in {}: run .ci/run (npm install there)",
            modules.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// A client process driven with JSON lines.

/// A client script: commands go to its stdin, its events come back from its stdout. It runs
/// in its own process group, killed (with everything it started) when dropped.
struct Client {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Option<Value>>,
    backlog: VecDeque<Value>,
    seen: Vec<Value>,
    stderr_path: PathBuf,
    eof: bool,
    /// Whether it ends by itself when its stdin closes (the scripts do; a browser does not).
    exits_on_eof: bool,
}

impl Client {
    fn spawn(what: &str, mut cmd: Command) -> Client {
        let stderr_path = std::env::temp_dir().join(format!(
            "corecast-web-{}-{}.log",
            std::process::id(),
            NEXT_LOG.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("create client log");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({e}): run .ci/run"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"ev": "garbage", "line": line}));
                if tx.send(Some(v)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        Client {
            what: what.to_string(),
            stdin: child.stdin.take(),
            child,
            rx,
            backlog: VecDeque::new(),
            seen: Vec::new(),
            stderr_path,
            eof: false,
            exits_on_eof: true,
        }
    }

    fn python(script: &str) -> Client {
        let mut cmd = Command::new("python3");
        cmd.arg("-u").arg(web_dir().join(script));
        Client::spawn(script, cmd)
    }

    fn node() -> Client {
        let mut cmd = Command::new("node");
        cmd.arg(web_dir().join("node/clients.mjs"));
        Client::spawn("node clients.mjs", cmd)
    }

    fn cmd(&mut self, v: Value) {
        let line = format!("{v}\n");
        let stdin = self.stdin.as_mut().expect("stdin open");
        if stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.flush())
            .is_err()
        {
            self.fail(&format!("cannot send {v}: the client is gone"));
        }
    }

    fn fail(&self, msg: &str) -> ! {
        let tail: Vec<String> = self
            .seen
            .iter()
            .rev()
            .take(60)
            .rev()
            .map(|v| v.to_string())
            .collect();
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        panic!(
            "{}: {msg}\n--- last events ---\n{}\n--- stderr ---\n{stderr}",
            self.what,
            tail.join("\n")
        );
    }

    /// Receives one event into the backlog; false on timeout.
    fn pull(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Some(v)) => {
                self.seen.push(v.clone());
                self.backlog.push_back(v);
                true
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                let status = self.child.try_wait().ok().flatten();
                self.fail(&format!("the client exited ({status:?})"));
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// The next event of connection `conn` (events of other connections stay queued).
    fn next_of(&mut self, conn: &str, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.backlog.iter().position(|v| v["conn"] == conn) {
                return self.backlog.remove(i).expect("present");
            }
            if !self.pull(deadline) {
                self.fail(&format!("timed out waiting for {what} on {conn}"));
            }
        }
    }

    /// The next event of `conn`, which must be of kind `ev`.
    fn expect_ev(&mut self, conn: &str, ev: &str) -> Value {
        let v = self.next_of(conn, ev);
        if v["ev"] != ev {
            self.fail(&format!("expected {ev} on {conn}, got {v}"));
        }
        v
    }

    /// Skips events of `conn` until one of kind `ev` (e.g. an error event before the end).
    fn skip_to_ev(&mut self, conn: &str, ev: &str) -> Value {
        loop {
            let v = self.next_of(conn, ev);
            if v["ev"] == ev {
                return v;
            }
        }
    }

    /// Asserts that `conn` reports nothing for `dur`.
    fn quiet(&mut self, conn: &str, dur: Duration) {
        let deadline = Instant::now() + dur;
        loop {
            if let Some(v) = self.backlog.iter().find(|v| v["conn"] == conn) {
                let v = v.clone();
                self.fail(&format!("expected nothing more on {conn}, got {v}"));
            }
            // `pull` is false only once the deadline has passed.
            if !self.pull(deadline) {
                return;
            }
        }
    }

    // --- WebSocket (Python `send`, Node `ws_send`).

    /// The next text frame of WebSocket `conn`, parsed, with its raw text.
    fn ws_next(&mut self, conn: &str) -> (Value, String) {
        let v = self.next_of(conn, "a WebSocket message");
        if v["ev"] != "msg" {
            self.fail(&format!("expected a text frame on {conn}, got {v}"));
        }
        let text = v["text"].as_str().expect("text").to_string();
        match serde_json::from_str(&text) {
            Ok(m) => (m, text),
            Err(e) => self.fail(&format!("not JSON ({e}): {text}")),
        }
    }

    /// The next frame of `conn`, which must equal `want`.
    fn ws_expect(&mut self, conn: &str, want: Value) -> String {
        let (m, text) = self.ws_next(conn);
        if m != want {
            self.fail(&format!("on {conn}: expected {want}, got {text}"));
        }
        text
    }

    /// The next `want.len()` frames of `conn` must be these deliveries, in order within each
    /// channel (messages of different channels come from different owners, in any order).
    fn ws_deliveries_any_channel_order(&mut self, conn: &str, want: &[Delivery]) {
        let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for _ in want {
            let (m, _) = self.ws_next(conn);
            let ch = m["ch"].as_str().unwrap_or_default().to_string();
            got.entry(ch).or_default().push(m);
        }
        let mut expected: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for d in want {
            expected.entry(d.ch.clone()).or_default().push(d.native());
        }
        if got != expected {
            self.fail(&format!("on {conn}: expected {expected:?}, got {got:?}"));
        }
    }

    /// The next frame of `conn`, which must be the delivery `want`.
    fn ws_delivery(&mut self, conn: &str, want: &Delivery) -> String {
        self.ws_expect(conn, want.native())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.exits_on_eof && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The whole group: a browser or a Node worker the client started goes too.
        // SAFETY: kill(2) on the process group this test created for its own child.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "{} stderr kept at {}",
                self.what,
                self.stderr_path.display()
            );
        } else {
            let _ = std::fs::remove_file(&self.stderr_path);
        }
    }
}

static NEXT_LOG: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------
// Publishing, and what each subscriber must then receive.

/// One published message as a subscriber must see it.
#[derive(Debug, Clone, PartialEq)]
struct Delivery {
    ch: String,
    seq: u64,
    data: Value,
}

impl Delivery {
    /// The native envelope, as WebSocket frames and SSE data carry it.
    fn native(&self) -> Value {
        json!({"ch": self.ch, "seq": self.seq, "data": self.data})
    }
}

/// Publishes over RESP, HTTP POST and (through a client) WebSocket, keeping each channel's
/// expected seq: every publish must take the next one, whoever publishes.
struct Publisher {
    resp: RespConn,
    http: SocketAddr,
    seqs: HashMap<String, u64>,
    epochs: HashMap<String, String>,
}

impl Publisher {
    fn new(server: &Server) -> Publisher {
        Publisher {
            resp: RespConn::connect(server.resp),
            http: server.http,
            seqs: HashMap::new(),
            epochs: HashMap::new(),
        }
    }

    fn next(&mut self, ch: &str, data: Value) -> Delivery {
        let seq = self.seqs.entry(ch.to_string()).or_insert(0);
        *seq += 1;
        Delivery {
            ch: ch.to_string(),
            seq: *seq,
            data,
        }
    }

    fn check_position(&mut self, ch: &str, answer: &Value, want: &Delivery) {
        assert_eq!(answer["seq"], json!(want.seq), "publish answer {answer}");
        let epoch = answer["epoch"].as_str().expect("epoch").to_string();
        assert!(
            !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_hexdigit()),
            "epoch {epoch:?}"
        );
        match self.epochs.get(ch) {
            Some(e) => assert_eq!(*e, epoch, "the epoch of {ch} changed"),
            None => {
                self.epochs.insert(ch.to_string(), epoch);
            }
        }
    }

    /// The epoch of `ch`, learnt from an HTTP or WebSocket publish answer or a subscription.
    fn epoch(&self, ch: &str) -> String {
        self.epochs
            .get(ch)
            .cloned()
            .unwrap_or_else(|| panic!("no epoch known for {ch} yet"))
    }

    /// PUBLISH over RESP; `data` is what WebSocket and SSE subscribers must then see.
    /// Returns the delivery and the receivers count.
    fn resp(&mut self, ch: &str, payload: &[u8], data: Value) -> (Delivery, i64) {
        self.resp.cmd(&[b"PUBLISH", ch.as_bytes(), payload]);
        let reply = self.resp.read_replies(1);
        let text = String::from_utf8_lossy(&reply);
        let n = text
            .strip_prefix(':')
            .and_then(|t| t.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("PUBLISH answered {text:?}"));
        (self.next(ch, data), n)
    }

    /// POST /pub with `content_type` (none when `None`); checks the answer's position.
    fn post(
        &mut self,
        ch: &str,
        content_type: Option<&str>,
        body: &[u8],
        data: Value,
    ) -> (Delivery, u64) {
        let (status, answer) = http_post(self.http, &format!("/pub?ch={ch}"), content_type, body);
        assert_eq!(status, 200, "POST /pub answered {status}: {answer}");
        let answer: Value = serde_json::from_str(&answer).expect("POST /pub answer is JSON");
        let d = self.next(ch, data);
        self.check_position(ch, &answer, &d);
        let receivers = answer["receivers"].as_u64().expect("receivers");
        (d, receivers)
    }

    /// Records that a WebSocket client published `data` on `ch`, with its `ok` answer.
    fn ws_published(&mut self, ch: &str, data: Value, ok: &Value) -> Delivery {
        let d = self.next(ch, data);
        self.check_position(ch, ok, &d);
        d
    }

    /// Records the position a subscription reported (a fresh channel is at seq 0).
    fn learn_epoch(&mut self, ch: &str, epoch: &Value) {
        let e = epoch.as_str().expect("epoch is a string").to_string();
        self.epochs.entry(ch.to_string()).or_insert(e);
    }
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// Waits until the server counts `n` subscriptions (the WebSocket `ok` already says so; an
/// SSE stream's join has no answer the non-browser clients show).
fn wait_subscriptions(server: &Server, n: u64) {
    server.wait_stats(&format!("{n} subscriptions"), |s| {
        s["total"]["subscriptions"].as_u64() == Some(n)
    });
}

// ---------------------------------------------------------------------------------------
// A TCP proxy the test can cut.

#[derive(Default)]
struct ProxyState {
    /// While held, new connections wait (accepted, not yet piped) until release.
    held: bool,
    pending: Vec<TcpStream>,
    live: Vec<(TcpStream, TcpStream)>,
    accepted: usize,
}

/// A TCP proxy in front of `upstream`: [`CutProxy::cut_and_hold`] drops every connection
/// through it (both sides see the connection end) and holds new ones until
/// [`CutProxy::release`], so messages can be published while the clients are away.
struct CutProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    fn start(upstream: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let mut s = st.lock().unwrap();
                s.accepted += 1;
                if s.held {
                    s.pending.push(conn);
                } else if let Some(pair) = pipe(conn, upstream) {
                    s.live.push(pair);
                }
            }
        });
        CutProxy {
            addr,
            upstream,
            state,
            stop,
        }
    }

    /// Drops every live connection and holds new ones.
    fn cut_and_hold(&self) {
        let mut s = self.state.lock().unwrap();
        s.held = true;
        for (a, b) in s.live.drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }

    /// Pipes the held connections to corecast and lets new ones through.
    fn release(&self) {
        let mut s = self.state.lock().unwrap();
        s.held = false;
        let pending = std::mem::take(&mut s.pending);
        for conn in pending {
            if let Some(pair) = pipe(conn, self.upstream) {
                s.live.push(pair);
            }
        }
    }

    /// Waits until at least `n` connections wait in the hold; returns how long it took.
    fn wait_pending(&self, n: usize, what: &str) -> Duration {
        let start = Instant::now();
        loop {
            let have = self.state.lock().unwrap().pending.len();
            if have >= n {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}: {have} of {n} reconnections arrived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        let mut s = self.state.lock().unwrap();
        for (a, b) in s.live.drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        s.pending.clear();
    }
}

/// Connects `client` to `upstream` and copies both ways; returns clones to cut them with.
fn pipe(client: TcpStream, upstream: SocketAddr) -> Option<(TcpStream, TcpStream)> {
    let server = TcpStream::connect(upstream).ok()?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    for (mut from, mut to) in [
        (client.try_clone().ok()?, server.try_clone().ok()?),
        (server.try_clone().ok()?, client.try_clone().ok()?),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    Some((client, server))
}

// ---------------------------------------------------------------------------------------
// 1. Python `websockets`.

fn py_ws() -> Client {
    require_python(
        "import websockets.asyncio.client",
        "websockets (13 or later)",
    );
    Client::python("ws_client.py")
}

fn py_ws_open(c: &mut Client, conn: &str, server: &Server) {
    c.cmd(json!({"cmd": "open", "conn": conn, "url": ws_url(server.http)}));
    c.expect_ev(conn, "open");
}

fn py_ws_send(c: &mut Client, conn: &str, msg: Value) {
    c.cmd(json!({"cmd": "send", "conn": conn, "text": msg.to_string()}));
}

/// Subscribes `conn` to `ch` (fresh, no `since`) and returns the `ok`'s epoch.
fn py_ws_sub(c: &mut Client, conn: &str, ch: &str, id: u64) -> Value {
    py_ws_send(c, conn, json!({"op": "sub", "ch": ch, "id": id}));
    let (ok, text) = c.ws_next(conn);
    if ok["op"] != "ok" || ok["id"] != id || ok["ch"] != ch || ok["seq"] != 0 {
        c.fail(&format!(
            "sub {ch}: expected ok id {id} at seq 0, got {text}"
        ));
    }
    ok["epoch"].clone()
}

#[test]
fn python_websockets_receives_from_resp_http_and_websocket_publishers() {
    let server = Server::start(2, &[]);
    let mut py = py_ws();
    let mut publ = Publisher::new(&server);
    py_ws_open(&mut py, "A", &server);
    let e = py_ws_sub(&mut py, "A", "news", 1);
    publ.learn_epoch("news", &e);
    let e = py_ws_sub(&mut py, "A", "other", 2);
    publ.learn_epoch("other", &e);

    // RESP: JSON payloads arrive as that JSON, spliced byte for byte; others as strings.
    let (d, n) = publ.resp(
        "news",
        br#"{"a":1,"b":[true,null]}"#,
        json!({"a":1,"b":[true,null]}),
    );
    assert_eq!(n, 1);
    let raw = py.ws_delivery("A", &d);
    assert_eq!(
        raw,
        r#"{"ch":"news","seq":1,"data":{"a":1,"b":[true,null]}}"#
    );
    let (d, _) = publ.resp("news", b"hello world", json!("hello world"));
    py.ws_delivery("A", &d);
    let (d, _) = publ.resp(
        "other",
        b"say \"hi\"\n\ttab \\ done",
        json!("say \"hi\"\n\ttab \\ done"),
    );
    py.ws_delivery("A", &d);
    let (d, _) = publ.resp("news", b"42", json!(42));
    py.ws_delivery("A", &d);
    let (d, _) = publ.resp(
        "other",
        "caf\u{e9} \u{1f600}".as_bytes(),
        json!("caf\u{e9} \u{1f600}"),
    );
    py.ws_delivery("A", &d);
    let (d, _) = publ.resp("other", b"{not json", json!("{not json"));
    py.ws_delivery("A", &d);

    // HTTP POST: application/json is JSON; any other content type (or none) is a string.
    let body = br#"{ "via": "http", "n": [1, 2.5, "x"] }"#;
    let (d, receivers) = publ.post(
        "news",
        Some("application/json"),
        body,
        json!({"via": "http", "n": [1, 2.5, "x"]}),
    );
    assert_eq!(receivers, 1);
    let raw = py.ws_delivery("A", &d);
    assert!(
        raw.contains(r#""data":{ "via": "http", "n": [1, 2.5, "x"] }"#),
        "not spliced byte for byte: {raw}"
    );
    let (d, _) = publ.post(
        "other",
        Some("text/plain"),
        b"plain {body}",
        json!("plain {body}"),
    );
    py.ws_delivery("A", &d);
    let (d, _) = publ.post("news", None, br#"{"x":1}"#, json!(r#"{"x":1}"#));
    py.ws_delivery("A", &d);

    // WebSocket pub from another websockets client.
    py_ws_open(&mut py, "B", &server);
    py.cmd(json!({"cmd": "send", "conn": "B",
        "text": r#"{"op":"pub","ch":"other","data":{ "from": "ws", "list": [1, 2, 3] },"id":7}"#}));
    let (ok, text) = py.ws_next("B");
    assert_eq!(ok["op"], "ok", "{text}");
    assert_eq!(ok["id"], 7, "{text}");
    assert_eq!(ok["receivers"], 1, "{text}");
    let d = publ.ws_published("other", json!({"from": "ws", "list": [1, 2, 3]}), &ok);
    let raw = py.ws_delivery("A", &d);
    assert!(
        raw.contains(r#""data":{ "from": "ws", "list": [1, 2, 3] }"#),
        "not spliced byte for byte: {raw}"
    );
    py_ws_send(
        &mut py,
        "B",
        json!({"op": "pub", "ch": "news", "data": [null, "s", {"k": -1}], "id": 8}),
    );
    let (ok, _) = py.ws_next("B");
    let d = publ.ws_published("news", json!([null, "s", {"k": -1}]), &ok);
    py.ws_delivery("A", &d);
    py.quiet("B", Duration::from_millis(100));

    // unsub stops deliveries of that channel only.
    py_ws_send(&mut py, "A", json!({"op": "unsub", "ch": "other", "id": 3}));
    let (ok, text) = py.ws_next("A");
    assert!(ok["op"] == "ok" && ok["id"] == 3, "unsub answered {text}");
    publ.resp("other", b"unheard", json!("unheard"));
    publ.post(
        "other",
        Some("application/json"),
        b"{\"unheard\":2}",
        json!({"unheard": 2}),
    );
    let (d, _) = publ.resp("news", b"still here", json!("still here"));
    py.ws_delivery("A", &d);
    py.quiet("A", Duration::from_millis(300));
    assert_eq!(publ.seqs["news"], 7);
    assert_eq!(publ.seqs["other"], 7);
}

#[test]
fn python_websockets_gets_its_messages_back_from_the_echo_route() {
    require_python(
        "import websockets.asyncio.client",
        "websockets (13 or later)",
    );
    let server = Server::start(1, &["--ws-echo"]);
    // Text as text, binary as binary, a fragmented message whole, a 1 MiB message, a ping.
    let script = r#"
import asyncio, sys
from websockets.asyncio.client import connect
async def main(url):
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send("h\u00e9llo \u2713")
        got = await ws.recv()
        assert got == "h\u00e9llo \u2713", repr(got)
        await ws.send(b"\x00\x01\xff")
        got = await ws.recv()
        assert got == b"\x00\x01\xff", repr(got)
        await ws.send(["frag", "men", "ted \u20ac"])
        got = await ws.recv()
        assert got == "fragmented \u20ac", repr(got)
        big = bytes(range(256)) * 4096
        await ws.send(big)
        got = await ws.recv()
        assert got == big, len(got)
        await asyncio.wait_for(await ws.ping(b"p"), 5)
    print("echo ok")
asyncio.run(asyncio.wait_for(main(sys.argv[1]), 20))
"#;
    let url = format!("ws://{}/ws/echo", server.http);
    let out = Command::new("python3")
        .args(["-c", script, &url])
        .output()
        .expect("run python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("echo ok"),
        "python websockets against /ws/echo: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_websockets_resume_replays_exactly_the_gap() {
    let server = Server::start(2, &[]);
    let mut py = py_ws();
    let mut publ = Publisher::new(&server);
    py_ws_open(&mut py, "A", &server);
    let epoch = py_ws_sub(&mut py, "A", "news", 1);
    publ.learn_epoch("news", &epoch);
    let mut seen = Vec::new();
    for i in 0..2 {
        let (d, _) = publ.resp(
            "news",
            format!("{{\"before\":{i}}}").as_bytes(),
            json!({"before": i}),
        );
        py.ws_delivery("A", &d);
        seen.push(d);
    }
    py.cmd(json!({"cmd": "close", "conn": "A"}));
    py.expect_ev("A", "closed");
    wait_subscriptions(&server, 0);

    // Five published while A is away, by RESP and HTTP, JSON and not.
    let mut missed = vec![
        publ.resp("news", b"{\"away\":1}", json!({"away": 1})).0,
        publ.resp("news", b"away two", json!("away two")).0,
        publ.post("news", Some("application/json"), b"[3]", json!([3]))
            .0,
        publ.post("news", Some("text/plain"), b"away four", json!("away four"))
            .0,
    ];
    let (d, receivers) = publ.resp("news", b"5", json!(5));
    assert_eq!(receivers, 0);
    missed.push(d);
    assert_eq!(publ.epoch("news"), epoch.as_str().unwrap());

    // A comes back with since = the last position it saw.
    let last = seen.last().unwrap().seq;
    py_ws_open(&mut py, "A2", &server);
    py_ws_send(
        &mut py,
        "A2",
        json!({"op": "sub", "ch": "news", "id": 9,
        "since": {"epoch": epoch, "seq": last}}),
    );
    py.ws_expect(
        "A2",
        json!({"op": "ok", "id": 9, "ch": "news", "epoch": epoch, "seq": 7}),
    );
    for d in &missed {
        py.ws_delivery("A2", d);
    }
    // Then live ones, with no gap and no duplicate.
    for i in 0..2 {
        let (d, n) = publ.resp(
            "news",
            format!("{{\"live\":{i}}}").as_bytes(),
            json!({"live": i}),
        );
        assert_eq!(n, 1);
        py.ws_delivery("A2", &d);
    }
    py.quiet("A2", Duration::from_millis(200));

    // A resume from the current position replays nothing and goes on live.
    py_ws_open(&mut py, "C", &server);
    py_ws_send(
        &mut py,
        "C",
        json!({"op": "sub", "ch": "news", "id": 1,
        "since": {"epoch": epoch, "seq": 9}}),
    );
    py.ws_expect(
        "C",
        json!({"op": "ok", "id": 1, "ch": "news", "epoch": epoch, "seq": 9}),
    );
    let (d, n) = publ.resp("news", b"{\"both\":true}", json!({"both": true}));
    assert_eq!(n, 2);
    py.ws_delivery("C", &d);
    py.ws_delivery("A2", &d);
    py.quiet("C", Duration::from_millis(200));
    py.quiet("A2", Duration::from_millis(10));
}

#[test]
fn python_websockets_resume_past_history_gets_a_reset_notice() {
    let server = Server::start(2, &["--history-size", "3"]);
    let mut py = py_ws();
    let mut publ = Publisher::new(&server);
    py_ws_open(&mut py, "A", &server);
    let epoch = py_ws_sub(&mut py, "A", "news", 1);
    publ.learn_epoch("news", &epoch);
    for i in 1..=2 {
        let (d, _) = publ.resp("news", format!("{i}").as_bytes(), json!(i));
        py.ws_delivery("A", &d);
    }
    py.cmd(json!({"cmd": "close", "conn": "A"}));
    py.expect_ev("A", "closed");
    wait_subscriptions(&server, 0);
    for i in 3..=12 {
        publ.resp("news", format!("{i}").as_bytes(), json!(i));
    }

    // History holds 10..=12 only: the gap 3..=12 cannot be covered, so no replay at all.
    py_ws_open(&mut py, "A2", &server);
    py_ws_send(
        &mut py,
        "A2",
        json!({"op": "sub", "ch": "news", "id": 2,
        "since": {"epoch": epoch, "seq": 2}}),
    );
    py.ws_expect(
        "A2",
        json!({"op": "ok", "id": 2, "ch": "news", "epoch": epoch, "seq": 12}),
    );
    py.ws_expect(
        "A2",
        json!({"op": "reset", "ch": "news", "epoch": epoch, "first": 10, "seq": 12}),
    );

    // A position from another epoch (a restarted server) is never misread: reset too.
    let other_epoch = if epoch == "1" { "2" } else { "1" };
    py_ws_open(&mut py, "D", &server);
    py_ws_send(
        &mut py,
        "D",
        json!({"op": "sub", "ch": "news", "id": 3,
        "since": {"epoch": other_epoch, "seq": 11}}),
    );
    py.ws_expect(
        "D",
        json!({"op": "ok", "id": 3, "ch": "news", "epoch": epoch, "seq": 12}),
    );
    py.ws_expect(
        "D",
        json!({"op": "reset", "ch": "news", "epoch": epoch, "first": 10, "seq": 12}),
    );

    // A resume inside history still works with the small history.
    py_ws_open(&mut py, "E", &server);
    py_ws_send(
        &mut py,
        "E",
        json!({"op": "sub", "ch": "news", "id": 4,
        "since": {"epoch": epoch, "seq": 10}}),
    );
    py.ws_expect(
        "E",
        json!({"op": "ok", "id": 4, "ch": "news", "epoch": epoch, "seq": 12}),
    );
    py.ws_expect("E", json!({"ch": "news", "seq": 11, "data": 11}));
    py.ws_expect("E", json!({"ch": "news", "seq": 12, "data": 12}));

    // Everyone goes on live after the notice.
    let (d, n) = publ.resp("news", b"13", json!(13));
    assert_eq!(n, 3);
    for conn in ["A2", "D", "E"] {
        py.ws_delivery(conn, &d);
        py.quiet(conn, Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// 2. Python `sseclient-py`.

fn py_sse() -> Client {
    // The PyPI package `sseclient` (another one) has the same module without `events`.
    require_python(
        "import sseclient; sseclient.SSEClient.events",
        "sseclient-py",
    );
    Client::python("sse_client.py")
}

fn sse_open(c: &mut Client, conn: &str, server: &Server, path: &str, last_id: Option<&str>) {
    c.cmd(
        json!({"cmd": "open", "conn": conn, "port": server.http.port(), "path": path,
        "last_event_id": last_id}),
    );
    let open = c.expect_ev(conn, "open");
    if open["status"] != 200
        || open["headers"]["content-type"] != "text/event-stream"
        || open["headers"]["access-control-allow-origin"] != "*"
    {
        c.fail(&format!("bad SSE response head: {open}"));
    }
}

fn sse_close(c: &mut Client, conn: &str) {
    c.cmd(json!({"cmd": "close", "conn": conn}));
    c.skip_to_ev(conn, "end");
}

/// The next SSE event of `conn` other than the `subscribed` announcements (checked to hold
/// an id and a position): (event name, id, data parsed as JSON, raw data).
fn sse_next(c: &mut Client, conn: &str) -> (String, String, Value, String) {
    let mut v = c.next_of(conn, "an SSE event");
    while v["ev"] == "event" && v["event"] == "subscribed" {
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| c.fail(&format!("subscribed data is not JSON ({e}): {v}")));
        if v["id"].as_str().unwrap_or_default().is_empty() || !data["seq"].is_u64() {
            c.fail(&format!("a subscribed event without its position: {v}"));
        }
        v = c.next_of(conn, "an SSE event");
    }
    if v["ev"] != "event" {
        c.fail(&format!("expected an SSE event on {conn}, got {v}"));
    }
    let raw = v["data"].as_str().unwrap_or_default().to_string();
    let data = serde_json::from_str(&raw)
        .unwrap_or_else(|e| c.fail(&format!("SSE data is not JSON ({e}): {v}")));
    (
        v["event"].as_str().unwrap_or_default().to_string(),
        v["id"].as_str().unwrap_or_default().to_string(),
        data,
        raw,
    )
}

/// The next SSE event of `conn` must be the message `want` with id `id`.
fn sse_expect(c: &mut Client, conn: &str, want: &Delivery, id: &str) -> String {
    let (event, got_id, data, raw) = sse_next(c, conn);
    if event != "message" || data != want.native() || got_id != id {
        c.fail(&format!(
            "on {conn}: expected message {} with id {id:?}, got {event} {raw} id {got_id:?}",
            want.native()
        ));
    }
    raw
}

#[test]
fn python_sse_multi_channel_stream_receives_and_resumes_with_last_event_id() {
    let server = Server::start(2, &[]);
    let mut py = py_sse();
    let mut publ = Publisher::new(&server);
    let path = "/sse?ch=news&ch=other";
    sse_open(&mut py, "S", &server, path, None);
    wait_subscriptions(&server, 2);

    // The HTTP publishes first, so the epochs are known for the ids.
    let (d, receivers) = publ.post(
        "news",
        Some("application/json"),
        br#"{"k":"v"}"#,
        json!({"k":"v"}),
    );
    assert_eq!(receivers, 1);
    let en = publ.epoch("news");
    let (event, first_id, data, raw) = sse_next(&mut py, "S");
    assert_eq!((event.as_str(), &data), ("message", &d.native()), "{raw}");
    assert_eq!(raw, r#"{"ch":"news","seq":1,"data":{"k":"v"}}"#);
    // The id holds the stream's position in every channel: other's (seq 0, from the
    // `subscribed` events right after subscribing) rides along.
    let eo = first_id
        .strip_prefix(&format!("{en}:1,"))
        .and_then(|rest| rest.strip_suffix(":0"))
        .unwrap_or_else(|| panic!("first id {first_id:?}, news epoch {en}"))
        .to_string();
    let (d, _) = publ.post("other", Some("text/plain"), b"x y", json!("x y"));
    assert_eq!(publ.epoch("other"), eo);
    let id = |n: u64, o: u64| format!("{en}:{n},{eo}:{o}");
    sse_expect(&mut py, "S", &d, &id(1, 1));
    let (d, _) = publ.resp("news", b"hello", json!("hello"));
    sse_expect(&mut py, "S", &d, &id(2, 1));
    let (d, _) = publ.resp("other", br#"[1,{"a":null}]"#, json!([1, {"a": null}]));
    sse_expect(&mut py, "S", &d, &id(2, 2));
    let (d, _) = publ.resp(
        "other",
        b"line one\nline two\r\nline three",
        json!("line one\nline two\r\nline three"),
    );
    let last_id = id(2, 3);
    sse_expect(&mut py, "S", &d, &last_id);

    // Away: three on news, one on other.
    sse_close(&mut py, "S");
    wait_subscriptions(&server, 0);
    let missed_news = [
        publ.resp("news", b"{\"m\":1}", json!({"m": 1})).0,
        publ.post("news", Some("application/json"), b"[\"m2\"]", json!(["m2"]))
            .0,
        publ.resp("news", b"m three", json!("m three")).0,
    ];
    let missed_other = publ.resp("other", b"{\"o\":4}", json!({"o": 4})).0;

    // Back with Last-Event-ID: exactly those four, each channel in order, ids advancing.
    sse_open(&mut py, "S2", &server, path, Some(&last_id));
    let mut news = Vec::new();
    let mut other = Vec::new();
    let mut final_id = String::new();
    for _ in 0..4 {
        let (event, got_id, data, raw) = sse_next(&mut py, "S2");
        assert_eq!(event, "message", "{raw}");
        let (n, o) = got_id
            .split_once(',')
            .unwrap_or_else(|| panic!("id {got_id:?}"));
        match data["ch"].as_str() {
            Some("news") => {
                assert_eq!(n, format!("{en}:{}", data["seq"]), "id {got_id} for {raw}");
                news.push(data);
            }
            Some("other") => {
                assert_eq!(o, format!("{eo}:{}", data["seq"]), "id {got_id} for {raw}");
                other.push(data);
            }
            _ => panic!("unexpected {raw}"),
        }
        final_id = got_id;
    }
    let want_news: Vec<Value> = missed_news.iter().map(Delivery::native).collect();
    assert_eq!(news, want_news);
    assert_eq!(other, vec![missed_other.native()]);
    assert_eq!(final_id, id(5, 4));

    // Then live.
    let (d, _) = publ.resp("other", b"live", json!("live"));
    sse_expect(&mut py, "S2", &d, &id(5, 5));
    let (d, _) = publ.resp("news", b"live", json!("live"));
    sse_expect(&mut py, "S2", &d, &id(6, 5));
    py.quiet("S2", Duration::from_millis(200));
}

#[test]
fn python_sse_single_channel_resume_reset_and_foreign_ids() {
    let server = Server::start(2, &["--history-size", "3"]);
    let mut py = py_sse();
    let mut publ = Publisher::new(&server);
    let path = "/sse?ch=solo";
    sse_open(&mut py, "S", &server, path, None);
    wait_subscriptions(&server, 1);
    let (d, _) = publ.post(
        "solo",
        Some("application/json"),
        b"{\"n\":1}",
        json!({"n": 1}),
    );
    let e = publ.epoch("solo");
    sse_expect(&mut py, "S", &d, &format!("{e}:1"));
    let (d, _) = publ.resp("solo", b"two", json!("two"));
    sse_expect(&mut py, "S", &d, &format!("{e}:2"));
    sse_close(&mut py, "S");
    wait_subscriptions(&server, 0);

    // Within history: exactly the gap.
    let m3 = publ.resp("solo", b"3", json!(3)).0;
    let m4 = publ.resp("solo", b"\"four\"", json!("four")).0;
    sse_open(&mut py, "S2", &server, path, Some(&format!("{e}:2")));
    sse_expect(&mut py, "S2", &m3, &format!("{e}:3"));
    sse_expect(&mut py, "S2", &m4, &format!("{e}:4"));
    py.quiet("S2", Duration::from_millis(200));
    sse_close(&mut py, "S2");
    wait_subscriptions(&server, 0);

    // Past history (5..=9 published, 7..=9 kept): an `event: reset` notice, then live.
    for i in 5..=9 {
        publ.resp("solo", format!("{i}").as_bytes(), json!(i));
    }
    sse_open(&mut py, "S3", &server, path, Some(&format!("{e}:4")));
    let (event, id, data, raw) = sse_next(&mut py, "S3");
    assert_eq!(event, "reset", "{raw}");
    assert_eq!(
        data,
        json!({"op": "reset", "ch": "solo", "epoch": e, "first": 7, "seq": 9}),
        "{raw}"
    );
    assert_eq!(id, format!("{e}:9"));
    let (d, _) = publ.resp("solo", b"10", json!(10));
    sse_expect(&mut py, "S3", &d, &format!("{e}:10"));

    // A foreign or malformed Last-Event-ID starts fresh: nothing replayed, then live.
    sse_open(&mut py, "S4", &server, path, Some("not-an-id"));
    sse_open(&mut py, "S5", &server, path, Some(&format!("{e}:1,{e}:1")));
    wait_subscriptions(&server, 3);
    let (d, _) = publ.resp("solo", b"11", json!(11));
    for conn in ["S3", "S4", "S5"] {
        sse_expect(&mut py, conn, &d, &format!("{e}:11"));
        py.quiet(conn, Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// 3. Node `ws` and `eventsource`.

/// The next `eventsource` message of `conn` must be `want` with id `id`.
fn es_expect(c: &mut Client, conn: &str, want: &Delivery, id: &str) {
    let v = c.next_of(conn, "an EventSource message");
    let data: Option<Value> = v["data"]
        .as_str()
        .and_then(|d| serde_json::from_str(d).ok());
    if v["ev"] != "event" || v["event"] != "message" || data != Some(want.native()) || v["id"] != id
    {
        c.fail(&format!(
            "on {conn}: expected message {} with id {id:?}, got {v}",
            want.native()
        ));
    }
}

#[test]
fn node_ws_and_eventsource_receive_and_eventsource_resumes_after_a_cut() {
    require_node();
    let server = Server::start(2, &["--sse-retry-ms", "200"]);
    let proxy = CutProxy::start(server.http);
    let mut node = Client::node();
    let mut publ = Publisher::new(&server);

    node.cmd(json!({"cmd": "ws_open", "conn": "W", "url": ws_url(server.http)}));
    node.expect_ev("W", "open");
    for (ch, id) in [("feed", 1), ("side", 2)] {
        node.cmd(json!({"cmd": "ws_send", "conn": "W",
            "text": json!({"op": "sub", "ch": ch, "id": id}).to_string()}));
        let (ok, text) = node.ws_next("W");
        assert!(
            ok["op"] == "ok" && ok["id"] == id && ok["ch"] == ch && ok["seq"] == 0,
            "{text}"
        );
        publ.learn_epoch(ch, &ok["epoch"]);
    }
    let (ef, es) = (publ.epoch("feed"), publ.epoch("side"));
    node.cmd(
        json!({"cmd": "es_open", "conn": "E", "url": format!("http://{}/sse?ch=feed", proxy.addr)}),
    );
    node.cmd(json!({"cmd": "es_open", "conn": "M",
        "url": format!("http://{}/sse?ch=feed&ch=side", proxy.addr)}));
    node.expect_ev("E", "open");
    node.expect_ev("M", "open");
    wait_subscriptions(&server, 5);

    // Live: RESP, HTTP and a WebSocket pub from `ws`.
    let mut feed = Vec::new();
    feed.push(publ.resp("feed", br#"{"n":1}"#, json!({"n": 1})).0);
    feed.push(
        publ.post("feed", Some("text/plain"), b"two", json!("two"))
            .0,
    );
    for (i, d) in feed.iter().enumerate() {
        node.ws_delivery("W", d);
        es_expect(&mut node, "E", d, &format!("{ef}:{}", i + 1));
        es_expect(&mut node, "M", d, &format!("{ef}:{},{es}:0", i + 1));
    }
    node.cmd(json!({"cmd": "ws_send", "conn": "W",
        "text": r#"{"op":"pub","ch":"side","data":{"from":"node"},"id":3}"#}));
    // W subscribes to side too: its own message and the answer come in either order.
    let mut frames = [node.ws_next("W"), node.ws_next("W")];
    frames.sort_by_key(|(m, _)| m["op"].is_null());
    let (ok, text) = &frames[0];
    assert!(
        ok["op"] == "ok" && ok["id"] == 3 && ok["receivers"] == 2,
        "{text}"
    );
    let side1 = publ.ws_published("side", json!({"from": "node"}), ok);
    assert_eq!(frames[1].0, side1.native(), "{}", frames[1].1);
    es_expect(&mut node, "M", &side1, &format!("{ef}:2,{es}:1"));

    // Cut the SSE connections; EventSource sees the end and reconnects by itself after the
    // 200 ms `retry:` advice (its own default is 3 s), sending Last-Event-ID.
    proxy.cut_and_hold();
    for conn in ["E", "M"] {
        let err = node.expect_ev(conn, "error");
        assert_eq!(err["readyState"], 0, "{conn} will not reconnect: {err}");
    }
    let missed = [
        publ.resp("feed", b"[3]", json!([3])).0,
        publ.post(
            "feed",
            Some("application/json"),
            b"{\"four\":4}",
            json!({"four": 4}),
        )
        .0,
        publ.resp("feed", b"five", json!("five")).0,
    ];
    let side2 = publ.resp("side", b"\"side two\"", json!("side two")).0;
    let took = proxy.wait_pending(2, "EventSource reconnections");
    assert!(
        took < Duration::from_millis(2500),
        "EventSource took {took:?} to reconnect: the retry advice was not followed"
    );
    proxy.release();
    node.expect_ev("E", "open");
    node.expect_ev("M", "open");
    for (i, d) in missed.iter().enumerate() {
        es_expect(&mut node, "E", d, &format!("{ef}:{}", i + 3));
    }
    let mut all = missed.to_vec();
    all.push(side2.clone());
    node.ws_deliveries_any_channel_order("W", &all);
    // The multi-channel stream replays each channel's gap; the two replays may interleave.
    let mut got = BTreeMap::new();
    let mut last_id = Value::Null;
    for _ in 0..4 {
        let v = node.next_of("M", "a replayed message");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap_or("null")).unwrap();
        assert_eq!(v["event"], "message", "{v}");
        got.entry(data["ch"].as_str().unwrap().to_string())
            .or_insert_with(Vec::new)
            .push(data.clone());
        last_id = v["id"].clone();
    }
    let want_feed: Vec<Value> = missed.iter().map(Delivery::native).collect();
    assert_eq!(got["feed"], want_feed);
    assert_eq!(got["side"], vec![side2.native()]);
    assert_eq!(last_id, format!("{ef}:5,{es}:2"));

    // Then live, everywhere.
    let (d, n) = publ.resp("feed", b"{\"live\":6}", json!({"live": 6}));
    assert_eq!(n, 3);
    node.ws_delivery("W", &d);
    es_expect(&mut node, "E", &d, &format!("{ef}:6"));
    es_expect(&mut node, "M", &d, &format!("{ef}:6,{es}:2"));
    for conn in ["W", "E", "M"] {
        node.quiet(conn, Duration::from_millis(100));
    }
}

/// A Node EventSource cut before its stream carried any message still resumes: the
/// `subscribed` event after the joins gave it a last event id (an id-only block would not:
/// the npm package drops blocks without data).
#[test]
fn node_eventsource_cut_before_its_first_message_resumes() {
    require_node();
    let server = Server::start(2, &["--sse-retry-ms", "200"]);
    let proxy = CutProxy::start(server.http);
    let mut node = Client::node();
    let mut publ = Publisher::new(&server);
    node.cmd(json!({"cmd": "es_open", "conn": "Q",
        "url": format!("http://{}/sse?ch=quiet", proxy.addr)}));
    node.expect_ev("Q", "open");
    wait_subscriptions(&server, 1);
    proxy.cut_and_hold();
    let err = node.expect_ev("Q", "error");
    assert_eq!(err["readyState"], 0, "Q will not reconnect: {err}");
    let (first, _) = publ.post("quiet", Some("application/json"), b"1", json!(1));
    let eq = publ.epoch("quiet");
    let (second, _) = publ.post("quiet", Some("text/plain"), b"two", json!("two"));
    proxy.wait_pending(1, "the EventSource reconnection");
    proxy.release();
    node.expect_ev("Q", "open");
    es_expect(&mut node, "Q", &first, &format!("{eq}:1"));
    es_expect(&mut node, "Q", &second, &format!("{eq}:2"));
    node.quiet("Q", Duration::from_millis(100));
}

// ---------------------------------------------------------------------------------------
// 4. Headless Chromium: the browser's own WebSocket and EventSource.

/// A fresh directory, removed when dropped (the browser's profile).
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT_LOG.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `tests/web/browser/page.html` and takes the page's `POST /report`s.
struct PageServer {
    addr: SocketAddr,
    rx: Receiver<Value>,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
        let addr = listener.local_addr().unwrap();
        let page = std::fs::read(web_dir().join("browser/page.html")).expect("page.html");
        let page = Arc::new(page);
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let sp = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (page, tx) = (page.clone(), tx.clone());
                std::thread::spawn(move || serve_page(conn, &page, &tx));
            }
        });
        PageServer { addr, rx, stop }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// One request (the server answers with `Connection: close`).
fn serve_page(mut conn: TcpStream, page: &[u8], tx: &mpsc::Sender<Value>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match conn.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match conn.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&tmp[..n]),
        }
    }
    let path = target.split('?').next().unwrap_or("");
    let response: Vec<u8> = match (method, path) {
        ("GET", "/page.html") => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                page.len()
            )
            .into_bytes();
            r.extend_from_slice(page);
            r
        }
        ("POST", "/report") => {
            let v = serde_json::from_slice(&body).unwrap_or_else(
                |_| json!({"src": "page", "type": "garbage", "body": String::from_utf8_lossy(&body)}),
            );
            let _ = tx.send(v);
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_vec()
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = conn.write_all(&response);
}

/// What the page reported, in its order.
struct Reports {
    pages: PageServer,
    all: Vec<Value>,
    next_n: u64,
    browser_log: PathBuf,
}

impl Reports {
    /// Receives reports until `pred` holds over all of them (bounded).
    fn until(&mut self, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !pred(&self.all) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.pages.rx.recv_timeout(left) {
                Ok(v) => {
                    assert_eq!(
                        v["n"], self.next_n,
                        "page reports out of order: {v}; before: {:?}",
                        self.all
                    );
                    self.next_n += 1;
                    if v["type"] == "exception" {
                        self.fail(&format!("the page threw: {v}"));
                    }
                    self.all.push(v);
                }
                Err(_) => self.fail(&format!("timed out waiting for {what}")),
            }
        }
    }

    fn fail(&self, msg: &str) -> ! {
        let reports: Vec<String> = self.all.iter().map(|v| v.to_string()).collect();
        let log = std::fs::read_to_string(&self.browser_log).unwrap_or_default();
        let log: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
        panic!(
            "{msg}\n--- page reports ---\n{}\n--- chromium stderr (last lines, reversed) ---\n{log}",
            reports.join("\n")
        );
    }
}

fn count(all: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    all.iter().filter(|v| f(v)).count()
}

/// The messages one source reported for one channel: (seq, data).
fn received(all: &[Value], src: &str, stream: Option<&str>, ch: &str) -> Vec<(u64, Value)> {
    all.iter()
        .filter(|v| {
            v["src"] == src
                && v["type"] == "message"
                && v["ch"] == ch
                && stream.is_none_or(|s| v["stream"] == s)
        })
        .map(|v| (v["seq"].as_u64().unwrap_or(0), v["data"].clone()))
        .collect()
}

#[test]
fn chromium_websocket_and_eventsource_resume_after_the_connection_drops() {
    require("Debian's chromium", "chromium", &["--version"]);
    let server = Server::start(2, &["--sse-retry-ms", "200"]);
    let proxy = CutProxy::start(server.http);
    let pages = PageServer::start();
    let profile = TempDir::new("corecast-chromium");
    let url = format!(
        "http://{}/page.html?target={}&ch=b,q",
        pages.addr, proxy.addr
    );
    let mut cmd = Command::new("timeout");
    cmd.args(["90", "chromium"])
        .args(support::CHROMIUM_ARGS)
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(&url);
    let mut browser = Client::spawn("chromium", cmd);
    browser.exits_on_eof = false;
    let mut r = Reports {
        pages,
        all: Vec::new(),
        next_n: 0,
        browser_log: browser.stderr_path.clone(),
    };
    let mut publ = Publisher::new(&server);

    // Subscribed everywhere: WebSocket oks for b and q, three EventSources open, and the
    // server counting 2 (ws) + 1 (es b) + 1 (es q) + 2 (es b,q).
    r.until("the page to subscribe", |all| {
        count(all, |v| v["src"] == "ws" && v["type"] == "ok") >= 2
            && count(all, |v| v["src"] == "es" && v["type"] == "open") >= 3
    });
    wait_subscriptions(&server, 6);
    for v in r.all.iter().filter(|v| v["type"] == "ok") {
        assert_eq!(v["seq"], 0, "{v}");
        publ.learn_epoch(v["ch"].as_str().unwrap(), &v["epoch"]);
    }

    // Two on b before the cut; q stays quiet, so its streams know only the id-only event.
    let mut want_b = vec![
        publ.resp("b", br#"{"i":1}"#, json!({"i": 1})).0,
        publ.post("b", Some("text/plain"), b"two", json!("two")).0,
    ];
    r.until("the first two messages", |all| {
        received(all, "ws", None, "b").len() >= 2
            && received(all, "es", Some("b"), "b").len() >= 2
            && received(all, "es", Some("b,q"), "b").len() >= 2
    });

    // Cut: the page's WebSocket closes and reconnects (its code), the EventSources reconnect
    // by themselves; all of them wait in the proxy's hold while we publish.
    proxy.cut_and_hold();
    r.until("the page to see the cut", |all| {
        count(all, |v| v["src"] == "ws" && v["type"] == "close") >= 1
            && count(all, |v| v["src"] == "es" && v["type"] == "error") >= 3
    });
    want_b.push(publ.resp("b", b"[3]", json!([3])).0);
    want_b.push(
        publ.post(
            "b",
            Some("application/json"),
            b"{\"four\":4}",
            json!({"four": 4}),
        )
        .0,
    );
    want_b.push(publ.resp("b", b"five", json!("five")).0);
    let mut want_q = vec![
        publ.resp("q", b"{\"q\":1}", json!({"q": 1})).0,
        publ.resp("q", b"q two", json!("q two")).0,
    ];
    proxy.wait_pending(4, "the page's reconnections (3 EventSource, 1 WebSocket)");
    proxy.release();
    r.until("the replays", |all| {
        received(all, "ws", None, "b").len() >= 5
            && received(all, "ws", None, "q").len() >= 2
            && received(all, "es", Some("b"), "b").len() >= 5
            && received(all, "es", Some("q"), "q").len() >= 2
            && received(all, "es", Some("b,q"), "b").len() >= 5
            && received(all, "es", Some("b,q"), "q").len() >= 2
    });

    // Then live.
    want_b.push(publ.resp("b", b"\"six\"", json!("six")).0);
    want_q.push(
        publ.post("q", Some("application/json"), b"[3,\"q\"]", json!([3, "q"]))
            .0,
    );
    r.until("the live messages", |all| {
        received(all, "ws", None, "b").len() >= 6
            && received(all, "ws", None, "q").len() >= 3
            && received(all, "es", Some("b"), "b").len() >= 6
            && received(all, "es", Some("q"), "q").len() >= 3
            && received(all, "es", Some("b,q"), "b").len() >= 6
            && received(all, "es", Some("b,q"), "q").len() >= 3
    });
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(v) = r.pages.rx.try_recv() {
        r.all.push(v);
    }

    // Exact sequences: no gap, no duplicate, the right data, everywhere.
    let want = |ds: &[Delivery]| -> Vec<(u64, Value)> {
        ds.iter().map(|d| (d.seq, d.data.clone())).collect()
    };
    for (src, stream, ch, ds) in [
        ("ws", None, "b", &want_b),
        ("ws", None, "q", &want_q),
        ("es", Some("b"), "b", &want_b),
        ("es", Some("q"), "q", &want_q),
        ("es", Some("b,q"), "b", &want_b),
        ("es", Some("b,q"), "q", &want_q),
    ] {
        let got = received(&r.all, src, stream, ch);
        if got != want(ds) {
            r.fail(&format!(
                "{src} {stream:?} channel {ch}: got {got:?}, want {:?}",
                want(ds)
            ));
        }
    }
    // The WebSocket resumed both channels (no reset), the streams got no reset either, and
    // the EventSources' ids are the positions they stand at.
    if count(&r.all, |v| v["type"] == "reset") != 0 {
        r.fail("a reset notice although history covered the gap");
    }
    let resumed = count(&r.all, |v| {
        v["src"] == "ws" && v["type"] == "ok" && v["resumed"] == true
    });
    if resumed != 2 {
        r.fail(&format!(
            "expected 2 resumed WebSocket subscriptions, saw {resumed}"
        ));
    }
    let (eb, eq) = (publ.epoch("b"), publ.epoch("q"));
    let last_id = |stream: &str| {
        r.all
            .iter()
            .rev()
            .find(|v| v["src"] == "es" && v["stream"] == stream && v["type"] == "message")
            .map(|v| v["id"].clone())
    };
    assert_eq!(last_id("b"), Some(json!(format!("{eb}:6"))));
    assert_eq!(last_id("q"), Some(json!(format!("{eq}:3"))));
    assert_eq!(last_id("b,q"), Some(json!(format!("{eb}:6,{eq}:3"))));
}
