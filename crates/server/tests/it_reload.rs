//! Life cycle of the real binary: SIGHUP reloads what can change at run time and logs what
//! changed; a bad file keeps the running values and says why; options built at start-up are
//! reported as needing a restart; logs are plain text (no colour codes) when stderr is not a
//! terminal, and one JSON object a line with `--log-format json`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

/// The `retry:` advice a new SSE stream gets.
fn sse_retry(http: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /sse?ch=r HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let mut b = [0u8; 4096];
    while !text.contains("retry: ") || !text[text.find("retry: ").unwrap()..].contains('\n') {
        let n = s.read(&mut b).expect("read");
        assert!(n > 0, "closed: {text:?}");
        text.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("retry: "))
        .unwrap();
    line.trim().parse().unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_runtime_options_and_keeps_them_on_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("corecast-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "sse_retry_ms = 1000\nslow_consumer = \"disconnect\"\n",
    )
    .unwrap();
    let server = Server::start(2, &["--config", path.to_str().unwrap()]);
    assert_eq!(sse_retry(server.http), 1000);

    std::fs::write(
        &path,
        "sse_retry_ms = 3000\nslow_consumer = \"drop\"\nlog = \"debug\"\nrecv_buffers = 1024\n",
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    wait_for("the new advice", || sse_retry(server.http) == 3000);
    let log = server.log();
    assert!(log.contains("sse.retry_ms: 1000 -> 3000"), "{log}");
    assert!(log.contains("slow_consumer: Disconnect -> Drop"), "{log}");
    assert!(
        log.contains("log: \\\"info\\\" -> \\\"debug\\\"")
            || log.contains("log: \"info\" -> \"debug\""),
        "{log}"
    );
    assert!(
        log.contains("changes only at a restart") && log.contains("recv_buffers"),
        "{log}"
    );

    // A file that does not parse changes nothing, and says why.
    std::fs::write(&path, "sse_retry_ms = \"soon\"\n").unwrap();
    server.signal(libc::SIGHUP);
    wait_for("the refusal in the log", || {
        server.log().contains("reload refused")
    });
    assert_eq!(sse_retry(server.http), 3000, "the running value stays");
    // So does a value that fails validation.
    std::fs::write(&path, "sse_retry_ms = 5000\nsse_storm_retry_ms = 10\n").unwrap();
    server.signal(libc::SIGHUP);
    wait_for("the second refusal", || {
        server.log().matches("reload refused").count() >= 2
    });
    assert_eq!(sse_retry(server.http), 3000);
    assert_eq!(http_get(server.http, "/healthz").0, 200);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_on_request() {
    let server = Server::start(1, &[]);
    let log = server.log();
    assert!(log.contains("ready"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a file: {log:?}"
    );
    drop(server);

    let server = Server::start(1, &["--log-format", "json"]);
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
    }
}
