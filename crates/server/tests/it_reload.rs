//! Life cycle of the real binary: SIGHUP reloads what can change at run time and logs what
//! changed; a bad file keeps the running values and says why; options built at start-up are
//! reported as needing a restart; a config path that is not a regular file (a FIFO) is
//! refused without blocking, so SIGTERM still works after it; logs are plain text (no colour
//! codes) when stderr is not a terminal, and one JSON object a line with `--log-format json`.

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

/// Makes a FIFO at `path` (with the `mkfifo` program, so the test needs no unsafe code).
fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Before the fix the reload opened the file on the signal thread: a FIFO without a writer
/// blocked that open for ever, and SIGTERM was never taken. Now a file that is not a
/// regular one is refused without blocking (the running configuration stays), and SIGTERM
/// after it stops the process as usual.
#[test]
fn a_reload_from_a_fifo_is_refused_and_sigterm_still_stops_the_process() {
    for via_symlink in [false, true] {
        let dir = std::env::temp_dir().join(format!(
            "corecast-reload-fifo-{}-{via_symlink}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "sse_retry_ms = 1000\n").unwrap();
        let mut server = Server::start(1, &["--config", path.to_str().unwrap()]);
        assert_eq!(sse_retry(server.http), 1000);

        std::fs::remove_file(&path).unwrap();
        if via_symlink {
            let fifo = dir.join("fifo");
            mkfifo(&fifo);
            std::os::unix::fs::symlink(&fifo, &path).unwrap();
        } else {
            mkfifo(&path);
        }
        server.signal(libc::SIGHUP);
        // Give the reload time to start (and, before the fix, to block).
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let status = server.terminate_within(Duration::from_secs(5));
        let log = server.log();
        let status = status.unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM; log:\n{log}"));
        assert!(status.success(), "{status}; log:\n{log}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            log.contains("reload refused") && log.contains("not a regular file"),
            "{log}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A config path that is not a regular file is a start-up error (exit 2), not a hang.
#[test]
fn a_fifo_config_at_start_up_exits_2() {
    let dir = std::env::temp_dir().join(format!("corecast-start-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    mkfifo(&path);
    let out = dir.join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args(["--config", path.to_str().unwrap()])
        .args([
            "--resp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("corecast did not exit within 5 s with a FIFO as its config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&out).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("not a regular file") && err.contains(path.to_str().unwrap()),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
