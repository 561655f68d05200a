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
        let stderr_path = std::env::temp_dir().join(format!(
            "corecast-test-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("create log");
        let shards = shards.to_string();
        let mut args = vec![
            "--shards",
            &shards,
            "--resp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corecast"));
        cmd.args(&args).stdout(Stdio::piped()).stderr(stderr);
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
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
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
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
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
