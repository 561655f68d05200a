//! Shared helpers for the integration tests: a `corecast` process on ephemeral loopback
//! ports, a Debian `redis-server` to compare against, raw RESP and HTTP clients. Every wait is
//! bounded; every socket is on 127.0.0.1.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running corecast, stopped with SIGTERM when dropped.
pub struct Server {
    child: Option<Child>,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    stderr_path: std::path::PathBuf,
}

impl Server {
    /// Starts corecast with `shards` shards and extra arguments.
    pub fn start(shards: usize, extra: &[&str]) -> Server {
        Self::start_limited(shards, extra, None)
    }

    /// Starts corecast with its open-files limit (soft and hard) set to `nofile`, if given.
    pub fn start_limited(shards: usize, extra: &[&str], nofile: Option<u64>) -> Server {
        Self::start_with(Some(shards), extra, nofile, &[])
    }

    /// Starts corecast with extra environment variables.
    pub fn start_env(shards: usize, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with(Some(shards), extra, None, env)
    }

    /// Starts corecast with its default number of shards (one per CPU of the affinity
    /// mask): only the loopback listeners and `extra` are given.
    pub fn start_default_shards(extra: &[&str]) -> Server {
        Self::start_with(None, extra, None, &[])
    }

    fn start_with(
        shards: Option<usize>,
        extra: &[&str],
        nofile: Option<u64>,
        env: &[(&str, &str)],
    ) -> Server {
        let stderr_path = std::env::temp_dir().join(format!(
            "corecast-test-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("create log");
        let shards = shards.map(|n| n.to_string());
        let mut args = vec![
            "--resp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ];
        if let Some(n) = &shards {
            args.extend(["--shards", n.as_str()]);
        }
        args.extend_from_slice(extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corecast"));
        cmd.args(&args).stdout(Stdio::piped()).stderr(stderr);
        cmd.envs(env.iter().copied());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn corecast");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) if l.starts_with("corecast ready") => l,
            other => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("corecast did not become ready ({other:?}); stderr:\n{log}");
            }
        };
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in ready line {line:?}"))
        };
        Server {
            resp: field("resp="),
            http: field("http="),
            child: Some(child),
            stderr_path,
        }
    }

    /// Sends `signal` to the process (SIGHUP to reload, for instance).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill");
    }

    /// The process's resident memory now, from `/proc/PID/status` (bytes).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// A `redis` crate client URL.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.resp)
    }

    /// GET /stats as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = http_get(self.http, "/stats");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats JSON")
    }

    /// Polls /stats until `pred` holds (bounded), returning the last snapshot.
    pub fn wait_stats(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last stats: {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and returns the exit status (bounded wait).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.terminate_within(Duration::from_secs(10))
    }

    /// Sends SIGTERM and returns the exit status if the process exits within `within`;
    /// otherwise kills it and returns `None`. Polls every 5 ms, so the time to exit can be
    /// measured around it.
    pub fn terminate_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for Server {
    fn drop(&mut self) {
        let status = self.terminate();
        if std::thread::panicking() {
            eprintln!("corecast log kept at {}", self.stderr_path.display());
        } else {
            let _ = std::fs::remove_file(&self.stderr_path);
        }
        if !std::thread::panicking() {
            if let Some(status) = status {
                assert!(
                    status.success(),
                    "corecast exited with {status} after SIGTERM"
                );
            }
        }
    }
}

/// A Debian redis-server on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts redis-server without persistence.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server); .ci/run installs it");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(addr) {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer { child, addr }
    }
}

/// Whether a RESP server at `addr` answers PING (never panics).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw RESP connection that reads whole replies as bytes.
pub struct RespConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl From<TcpStream> for RespConn {
    fn from(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        RespConn {
            stream,
            buf: Vec::new(),
        }
    }
}

impl RespConn {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> RespConn {
        RespConn::from(TcpStream::connect(addr).expect("connect"))
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a command as a multibulk array.
    pub fn cmd(&mut self, argv: &[&[u8]]) {
        let mut v = format!("*{}\r\n", argv.len()).into_bytes();
        for a in argv {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        self.send(&v);
    }

    /// Reads exactly `n` complete replies and returns their bytes.
    pub fn read_replies(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut pos = 0;
            let mut complete = 0;
            while complete < n {
                match reply_len(&self.buf[pos..]) {
                    Some(len) => {
                        pos += len;
                        complete += 1;
                    }
                    None => break,
                }
            }
            if complete == n {
                let out = self.buf[..pos].to_vec();
                self.buf.drain(..pos);
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out reading {n} replies; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => panic!(
                    "connection closed while reading replies; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until the peer closes (bounded) and returns everything received.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = std::mem::take(&mut self.buf);
        let mut tmp = [0u8; 65536];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return out,
                Ok(k) => out.extend_from_slice(&tmp[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "peer did not close; got {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}

/// Length of the first complete RESP2 reply in `b`, if complete.
pub fn reply_len(b: &[u8]) -> Option<usize> {
    let line_end = b.windows(2).position(|w| w == b"\r\n")?;
    let head = *b.first()?;
    let num = || {
        std::str::from_utf8(&b[1..line_end])
            .ok()?
            .parse::<i64>()
            .ok()
    };
    match head {
        // RESP3's null is `_`; simple strings, errors and integers are one line in both.
        b'+' | b'-' | b':' | b'_' => Some(line_end + 2),
        b'$' => {
            let n = num()?;
            if n < 0 {
                return Some(line_end + 2);
            }
            let total = line_end + 2 + n as usize + 2;
            (b.len() >= total).then_some(total)
        }
        // Arrays, RESP3 pushes (`>`) and maps (`%`, two elements a pair).
        b'*' | b'>' | b'%' => {
            let n = num()? * if head == b'%' { 2 } else { 1 };
            let mut pos = line_end + 2;
            for _ in 0..n.max(0) {
                pos += reply_len(&b[pos..])?;
            }
            Some(pos)
        }
        _ => None,
    }
}

/// A one-shot HTTP GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_once(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

/// A one-shot HTTP POST with a `Content-Length` body; returns (status, body).
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http_once(addr, bytes)
}

/// Writes one request on a fresh connection and reads the answer to the connection's end.
fn http_once(addr: SocketAddr, request: Vec<u8>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&request).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read http response");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Per-shard values of a stats counter.
pub fn per_shard(stats: &serde_json::Value, key: &str) -> Vec<u64> {
    stats["shards"]
        .as_array()
        .expect("shards array")
        .iter()
        .map(|s| s[key].as_u64().unwrap_or(0))
        .collect()
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 and WebSocket clients (it_ws_frames, it_http_front)
// ---------------------------------------------------------------------------------------

/// The sample key of RFC 6455 section 1.3 and the `Sec-WebSocket-Accept` the RFC gives for
/// it, so the accept check does not depend on corecast's own SHA-1 and base64.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The mask every test client frame uses (non-zero, so unmasking is exercised).
pub const WS_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A valid upgrade request for `GET /ws` with `extra` header lines (each ending in CRLF).
pub fn ws_upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// An HTTP response: status, the head as text (status line and headers) and the body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// A raw client connection on the HTTP listener: reads whole responses (bounded waits).
pub struct HttpConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// Reads more bytes into `buf`; `Ok(false)` at EOF, `Err` on a timeout or socket error.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut tmp = [0u8; 65536];
    match stream.read(&mut tmp) {
        Ok(0) => Ok(false),
        Ok(k) => {
            buf.extend_from_slice(&tmp[..k]);
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Waits (at most `within`) for the peer to close `stream`, returning the bytes that came
/// first (after what `buf` already held). A reset counts as closed.
pub fn wait_closed(stream: &mut TcpStream, buf: &mut Vec<u8>, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut out = std::mem::take(buf);
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    loop {
        match fill(stream, &mut out) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection within {within:?}; got {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    out
}

impl HttpConn {
    /// Connects to `addr` (5 s read timeout, no Nagle).
    pub fn connect(addr: SocketAddr) -> HttpConn {
        HttpConn::from(TcpStream::connect(addr).expect("connect http"))
    }

    /// Sends raw bytes; `false` if the peer already closed.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads one whole response: the head, then `Content-Length` bytes of body (none for a
    /// 101 or a response without `Content-Length`). Panics on EOF or after 5 s.
    pub fn response(&mut self) -> HttpResponse {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut want: Option<(usize, HttpResponse)> = None;
        loop {
            if want.is_none() {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
                    let r = HttpResponse {
                        status,
                        head,
                        body: Vec::new(),
                    };
                    let len = r
                        .header("content-length")
                        .map(|v| v.parse::<usize>().expect("content-length"))
                        .unwrap_or(0);
                    want = Some((len, r));
                }
            }
            if let Some((len, _)) = &want {
                if self.buf.len() >= *len {
                    let (len, mut r) = want.take().unwrap();
                    r.body = self.buf.drain(..len).collect();
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out reading a response; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            match fill(&mut self.stream, &mut self.buf) {
                Ok(true) => {}
                Ok(false) => panic!(
                    "connection closed while reading a response; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Err(e) if is_timeout(&e) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Sends `request` and reads one response.
    pub fn exchange(&mut self, request: &[u8]) -> HttpResponse {
        assert!(self.send(request), "write failed");
        self.response()
    }

    /// Asserts that the server closes the connection (within `within`) without sending
    /// anything more.
    pub fn expect_closed(&mut self, within: Duration) {
        let rest = wait_closed(&mut self.stream, &mut self.buf, within);
        assert!(
            rest.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// The connection as a WebSocket, after a 101 was read.
    pub fn into_ws(self) -> WsClient {
        WsClient {
            stream: self.stream,
            buf: self.buf,
        }
    }
}

impl From<TcpStream> for HttpConn {
    fn from(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }
}

/// One server frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    /// The RSV1-3 bits (always 0 from a server that negotiated no extension).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl WsFrame {
    /// The close code and reason of a close frame.
    pub fn close_code(&self) -> (u16, String) {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        assert!(self.payload.len() >= 2, "close frame without a code");
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let reason = String::from_utf8(self.payload[2..].to_vec()).expect("UTF-8 reason");
        (code, reason)
    }
}

/// The first whole server frame in `b` and its length. Server frames must be unmasked and
/// use the shortest length encoding (2, 4 or 10-byte headers).
pub fn parse_server_frame(b: &[u8]) -> Option<(WsFrame, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
    let (len, at) = match b1 & 0x7f {
        126 => {
            let l = u16::from_be_bytes(b.get(2..4)?.try_into().unwrap()) as usize;
            assert!(l >= 126, "non-minimal 16-bit length {l}");
            (l, 4)
        }
        127 => {
            let l = u64::from_be_bytes(b.get(2..10)?.try_into().unwrap()) as usize;
            assert!(l > 0xffff, "non-minimal 64-bit length {l}");
            (l, 10)
        }
        n => (n as usize, 2),
    };
    let payload = b.get(at..at + len)?.to_vec();
    Some((
        WsFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: b0 & 0x0f,
            payload,
        },
        at + len,
    ))
}

/// A WebSocket client: sends masked frames, reads server frames (bounded waits).
pub struct WsClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    /// Opens a WebSocket at `/ws` on `addr`, asserting the 101.
    pub fn connect(addr: SocketAddr) -> WsClient {
        WsClient::upgrade(HttpConn::connect(addr), "")
    }

    /// Upgrades `conn` with `extra` header lines, asserting the 101.
    pub fn upgrade(mut conn: HttpConn, extra: &str) -> WsClient {
        let r = conn.exchange(ws_upgrade_request(extra).as_bytes());
        assert_eq!(r.status, 101, "upgrade refused: {r:?}");
        conn.into_ws()
    }

    /// Sends raw bytes; `false` if the peer already closed (it may close as soon as it sees
    /// an error, before the rest of our bytes arrive).
    pub fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) -> bool {
        let mut out = Vec::new();
        corecast_proto::ws::client_frame(&mut out, opcode, fin, WS_MASK, payload);
        self.send_raw(&out)
    }

    /// Sends one text message in one frame.
    pub fn send_text(&mut self, text: &str) {
        assert!(self.send_frame(1, true, text.as_bytes()), "write failed");
    }

    /// The next frame, or `None` if none arrives within `within`. Panics at EOF.
    pub fn frame_within(&mut self, within: Duration) -> Option<WsFrame> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((f, n)) = parse_server_frame(&self.buf) {
                self.buf.drain(..n);
                return Some(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match fill(&mut self.stream, &mut self.buf) {
                Ok(true) => {}
                Ok(false) => panic!(
                    "connection closed while waiting for a frame; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Err(e) if is_timeout(&e) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next frame (within 5 s).
    pub fn frame(&mut self) -> WsFrame {
        self.frame_within(Duration::from_secs(5))
            .expect("timed out waiting for a frame")
    }

    /// The next frame, which must be a single-frame text message holding JSON.
    pub fn json(&mut self) -> serde_json::Value {
        let f = self.frame();
        assert_eq!(
            (f.opcode, f.fin, f.rsv),
            (1, true, 0),
            "not a text frame: {f:?}"
        );
        serde_json::from_slice(&f.payload).unwrap_or_else(|e| {
            panic!(
                "text frame is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&f.payload)
            )
        })
    }

    /// Subscribes to `ch` with request id `id` and asserts the `ok`.
    pub fn sub(&mut self, ch: &str, id: u64) {
        let req = serde_json::json!({"op": "sub", "ch": ch, "id": id});
        self.send_text(&req.to_string());
        let ok = self.json();
        assert_eq!(ok["op"], "ok", "sub {ch}: {ok}");
        assert_eq!(ok["id"], id, "sub {ch}: {ok}");
        assert_eq!(ok["ch"], ch, "sub {ch}: {ok}");
    }

    /// Reads frames until a close frame, asserts its code is `code` and that the server then
    /// closes the TCP connection (within 5 s). Returns the frames before the close and the
    /// close reason.
    pub fn expect_close(&mut self, code: u16) -> (Vec<WsFrame>, String) {
        let mut before = Vec::new();
        let close = loop {
            let f = self.frame();
            if f.opcode == 8 {
                break f;
            }
            before.push(f);
        };
        assert!(close.fin && close.rsv == 0, "{close:?}");
        assert!(close.payload.len() <= 125, "{close:?}");
        let (got, reason) = close.close_code();
        assert_eq!(
            got, code,
            "close code (reason {reason:?}, frames before: {before:?})"
        );
        let rest = wait_closed(&mut self.stream, &mut self.buf, Duration::from_secs(5));
        assert!(
            rest.is_empty(),
            "bytes after the close frame: {:?}",
            String::from_utf8_lossy(&rest)
        );
        (before, reason)
    }
}

/// The server still serves other clients: `/healthz` answers 200 and a fresh WebSocket
/// gets its sub confirmed.
pub fn assert_still_serving(server: &mut Server) {
    assert!(server.alive(), "corecast died; log:\n{}", server.log());
    assert_eq!(http_get(server.http, "/healthz"), (200, "ok\n".to_string()));
    let mut ws = WsClient::connect(server.http);
    ws.sub("still-serving", 1);
}

/// Fails the test with how to install `what` unless `program args` runs and exits 0.
#[allow(dead_code)]
pub fn require(what: &str, program: &str, args: &[&str]) {
    let ok = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{what} is missing (`{program} {}` failed): run scripts/test.sh, which installs it",
        args.join(" ")
    );
}

/// Headless Chromium's flags for tests: no sandbox (root in CI), nothing in the background,
/// and no host name resolving, so nothing leaves the machine (127.0.0.1 is excepted, or the
/// rule would refuse it too). The caller adds the profile directory and what to open.
#[allow(dead_code)]
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];
