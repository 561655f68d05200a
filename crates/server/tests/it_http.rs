//! The HTTP operations endpoints, the CLI contract (config file, bad values, SIGTERM), and
//! redis-cli as a client.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{http_get, RespConn, Server};

#[test]
fn healthz_stats_and_404() {
    let server = Server::start(2, &[]);
    assert_eq!(http_get(server.http, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(server.http, "/nope").0, 404);
    let s = server.stats();
    assert_eq!(s["shards"].as_array().unwrap().len(), 2);
    for shard in s["shards"].as_array().unwrap() {
        assert!(shard["cpu"].is_u64(), "cpu missing in {shard}");
        assert!(shard["node"].is_u64() || shard["node"].is_null(), "{shard}");
    }
    assert!(
        s["total"].get("cpu").is_none(),
        "placement is per shard only"
    );
    for obj in s["shards"].as_array().unwrap().iter().chain([&s["total"]]) {
        for key in [
            "connections",
            "subscriptions",
            "channels",
            "published",
            "delivered",
            "bytes_in",
            "bytes_out",
            "slow_consumer_disconnects",
            "dropped",
            "ring_full",
        ] {
            assert!(obj[key].is_u64(), "{key} missing in {obj}");
        }
        for h in ["publish_to_send", "send_complete", "turn"] {
            for q in ["count", "p50", "p90", "p99", "p999", "max"] {
                assert!(
                    obj["latency_us"][h][q].is_u64(),
                    "latency_us.{h}.{q} missing in {obj}"
                );
            }
        }
    }
}

/// Each shard's CPU and NUMA node reach the start-up log, `/stats` and `/metrics`, read from
/// a fake sysfs tree (`CORECAST_SYSFS_ROOT`) that puts the shards' CPUs on two nodes of two
/// sockets.
#[test]
fn shards_report_their_cpu_and_node() {
    use corecast_runtime::topology::{LayoutCpu, SysfsLayout};
    let cpus = corecast_runtime::process_cpus().unwrap();
    let layout = SysfsLayout {
        cpus: cpus
            .iter()
            .enumerate()
            .map(|(i, &cpu)| LayoutCpu {
                cpu,
                node: i % 2,
                socket: i % 2,
                core: i / 2,
            })
            .collect(),
        offline: Vec::new(),
        node_dirs: true,
        missing_nodes: Vec::new(),
    };
    let root = std::env::temp_dir().join(format!("corecast-it-sysfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    layout.write(&root).unwrap();
    let server = Server::start_env(2, &[], &[("CORECAST_SYSFS_ROOT", root.to_str().unwrap())]);
    let s = server.stats();
    for (i, shard) in s["shards"].as_array().unwrap().iter().enumerate() {
        assert_eq!(shard["cpu"], cpus[i], "{shard}");
        assert_eq!(shard["node"], i % 2, "{shard}");
    }
    let (status, metrics) = http_get(server.http, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE corecast_shard_node gauge\n"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("corecast_shard_cpu{{shard=\"1\"}} {}\n", cpus[1])));
    assert!(metrics.contains("corecast_shard_node{shard=\"1\"} 1\n"));
    let log = server.log();
    assert!(log.contains("topology: 2 sockets, 2 NUMA nodes"), "{log}");
    assert!(log.contains("shard placement"), "{log}");
    assert!(log.contains("memory policy: "), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}

/// HEAD answers GET's status and headers without the body, so a keep-alive client reads the
/// next response from the right byte; POST to a stats route is 405.
#[test]
fn head_has_no_body_and_keeps_the_connection_in_step() {
    let server = Server::start(1, &[]);
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /stats HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut all).unwrap();
    let text = String::from_utf8(all).unwrap();
    let responses: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 4, "{text}");
    assert!(responses[0].starts_with("200 OK\r\n"), "{text}");
    assert!(responses[0].contains("Content-Length: 3\r\n"), "{text}");
    assert!(
        responses[0].ends_with("\r\n\r\n"),
        "HEAD carried a body: {text}"
    );
    assert!(responses[1].starts_with("200 OK\r\n"), "{text}");
    assert!(
        responses[1].ends_with("\r\n\r\n"),
        "HEAD carried a body: {text}"
    );
    assert!(responses[2].ends_with("\r\n\r\nok\n"), "{text}");
    assert!(responses[3].starts_with("405 "), "{text}");
}

#[test]
fn latency_histograms_fill_with_traffic() {
    let server = Server::start(1, &[]);
    let mut sub = RespConn::connect(server.resp);
    sub.cmd(&[b"SUBSCRIBE", b"t"]);
    sub.read_replies(1);
    let mut publ = RespConn::connect(server.resp);
    for _ in 0..50 {
        publ.cmd(&[b"PUBLISH", b"t", b"x"]);
        publ.read_replies(1);
        sub.read_replies(1);
    }
    let s = server.wait_stats("histograms", |s| {
        s["total"]["latency_us"]["publish_to_send"]["count"].as_u64() >= Some(1)
    });
    assert!(s["total"]["delivered"].as_u64() == Some(50), "{s}");
    assert!(
        s["total"]["latency_us"]["send_complete"]["count"].as_u64() >= Some(50),
        "{s}"
    );
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let server = Server::start(2, &[]);
    let mut publ = RespConn::connect(server.resp);
    publ.cmd(&[b"PUBLISH", b"t", b"x"]);
    publ.read_replies(1);
    let (status, body) = http_get(server.http, "/metrics");
    assert_eq!(status, 200);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/check_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "metrics rejected:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_file_and_invalid_values() {
    let dir = std::env::temp_dir().join(format!("corecast-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "shards = 1\nmax_pending_bytes = 2000000\nslow_consumer = \"drop\"\n",
    )
    .unwrap();
    let server = Server::start(1, &["--config", good.to_str().unwrap()]);
    assert_eq!(server.stats()["shards"].as_array().unwrap().len(), 1);
    drop(server);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "slow_consumer = \"maybe\"\n").unwrap();
    for args in [
        vec!["--config", bad.to_str().unwrap()],
        vec!["--slow-consumer", "maybe"],
        vec!["--recv-buffers", "100"],
        vec!["--max-connections", "lots"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_corecast"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let key = args.last().unwrap();
        let named = [
            "slow_consumer",
            "slow-consumer",
            "recv_buffers",
            "max-connections",
        ];
        assert!(named.iter().any(|k| err.contains(k)), "{key}: {err}");
    }
    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "no_such_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args(["--config", unknown.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));
    let help = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for opt in [
        "--shards",
        "--cores",
        "--max-pending-bytes",
        "--slow-consumer",
        "--zerocopy-threshold",
        "--config",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_instance_on_a_live_port_refuses_to_start() {
    // SO_REUSEPORT would otherwise let it share the port and split the clients.
    let server = Server::start(1, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args([
            "--shards",
            "1",
            "--resp-listen",
            &server.resp.to_string(),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run corecast");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {}", server.resp)) && err.contains("in use"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it must not report ready");
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    let mut server = Server::start(2, &[]);
    let mut sub = RespConn::connect(server.resp);
    sub.cmd(&[b"SUBSCRIBE", b"bye"]);
    sub.read_replies(1);
    let status = server.terminate().expect("exited within the bound");
    assert!(status.success(), "{status}");
    assert_eq!(sub.read_to_close(), b"");
}

fn redis_cli(server: &Server, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.resp.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_talks_to_corecast() {
    let server = Server::start(2, &[]);
    assert_eq!(redis_cli(&server, &["PING"]), "PONG");
    assert_eq!(redis_cli(&server, &["ECHO", "hi there"]), "hi there");
    let mut sub = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.resp.port().to_string(),
            "SUBSCRIBE",
            "cli",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    // redis-cli prints the confirmation as three lines: subscribe, cli, 1.
    let confirm: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(confirm, ["subscribe", "cli", "1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    for i in 0..3 {
        assert_eq!(
            redis_cli(&server, &["PUBLISH", "cli", &format!("hello {i}")]),
            "1"
        );
    }
    while got.len() < 9 {
        assert!(Instant::now() < deadline);
        got.push(lines.next().unwrap().unwrap());
    }
    let _ = sub.kill();
    let _ = sub.wait();
    assert_eq!(
        got,
        ["message", "cli", "hello 0", "message", "cli", "hello 1", "message", "cli", "hello 2"]
    );
    assert_eq!(
        redis_cli(&server, &["PUBSUB", "NUMSUB", "cli"])
            .lines()
            .count(),
        2
    );
}
