//! A short bench against a real corecast (the broker library, launched in-process on
//! ephemeral loopback ports), a real redis-server and a real nats-server: every message is
//! delivered once, in order, to every subscriber of its channel. No speed is asserted.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bench(target: SocketAddr, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_corecast-bench"))
        .args([
            "--target",
            &target.to_string(),
            "--duration-s",
            "1",
            "--warmup-s",
            "0.3",
            "--json",
        ])
        .args(extra)
        .output()
        .expect("run corecast-bench");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(line.trim()).expect("one JSON line")
}

fn check(v: &serde_json::Value, subs_per_channel: u64) {
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["duplicated"], 0, "{v}");
    assert_eq!(v["reordered"], 0, "{v}");
    let published = v["published_total"].as_u64().unwrap();
    assert!(published > 0, "{v}");
    assert_eq!(
        v["delivered_total"].as_u64().unwrap(),
        published * subs_per_channel,
        "{v}"
    );
}

fn scenarios(target: SocketAddr) {
    scenarios_with(target, &[]);
}

/// The same three runs, with `proto` arguments added to each.
fn scenarios_with(target: SocketAddr, proto: &[&str]) {
    let bench = |target, args: &[&str]| {
        let all: Vec<&str> = args.iter().chain(proto).copied().collect();
        bench(target, &all)
    };
    check(
        &bench(
            target,
            &[
                "--subscribers",
                "40",
                "--channels",
                "4",
                "--publishers",
                "2",
            ],
        ),
        10,
    );
    check(
        &bench(
            target,
            &[
                "--subscribers",
                "20",
                "--channels",
                "1",
                "--payload",
                "1024",
                "--threads",
                "2",
            ],
        ),
        20,
    );
    check(
        &bench(
            target,
            &["--subscribers", "10", "--channels", "2", "--rate", "2000"],
        ),
        5,
    );
}

/// A corecast with RESP and HTTP listeners on ephemeral loopback ports.
fn corecast(
    tune: impl FnOnce(&mut corecast_broker::BrokerConfig),
) -> (corecast_broker::Running, SocketAddr, SocketAddr) {
    let mut cfg = corecast_broker::BrokerConfig {
        cpus: vec![0, 0],
        listeners: vec![
            corecast_broker::ListenerSpec {
                protocol: corecast_broker::Protocol::Resp,
                addr: "127.0.0.1:0".parse().unwrap(),
            },
            corecast_broker::ListenerSpec {
                protocol: corecast_broker::Protocol::Http,
                addr: "127.0.0.1:0".parse().unwrap(),
            },
        ],
        ..Default::default()
    };
    tune(&mut cfg);
    let running = corecast_broker::launch(cfg).expect("broker starts");
    let resp = running.addr(corecast_broker::Protocol::Resp).unwrap();
    let http = running.addr(corecast_broker::Protocol::Http).unwrap();
    (running, resp, http)
}

#[test]
fn counts_add_up_over_websocket_and_sse_against_corecast() {
    let (running, resp, http) = corecast(|_| {});
    let http = http.to_string();
    for mode in ["ws", "sse"] {
        scenarios_with(resp, &["--sub-mode", mode, "--http-target", &http]);
        // The broker's seq on every connection ran without a gap or a repeat.
        let v = bench(
            resp,
            &[
                "--sub-mode",
                mode,
                "--http-target",
                &http,
                "--subscribers",
                "6",
                "--channels",
                "3",
                "--payload",
                "200",
            ],
        );
        check(&v, 2);
        assert_eq!(v["payload"], 200, "{v}");
        for k in ["seq_missed", "seq_duplicated", "resets", "reconnects"] {
            assert_eq!(v["web"][k], 0, "{k}: {v}");
        }
    }
    running.stop();
}

#[test]
fn an_sse_reconnect_storm_resumes_without_loss_against_corecast() {
    let (running, resp, http) = corecast(|cfg| {
        cfg.sse.retry_ms = 150;
        cfg.history.size = 4096;
    });
    let http = http.to_string();
    let v = bench(
        resp,
        &[
            "--sub-mode",
            "sse",
            "--http-target",
            &http,
            "--subscribers",
            "30",
            "--channels",
            "3",
            "--rate",
            "600",
            "--storm-at-s",
            "0.2",
            "--threads",
            "2",
        ],
    );
    check(&v, 10);
    let s = &v["storm"];
    assert_eq!(s["cut"], 30, "{v}");
    assert_eq!(s["resubscribed"], 30, "{v}");
    assert!(s["all_resubscribed_ms"].as_f64().unwrap() >= 150.0, "{v}");
    assert_eq!(s["missed_after_resume"], 0, "{v}");
    assert_eq!(s["duplicated_after_resume"], 0, "{v}");
    assert_eq!(s["resets"], 0, "{v}");
    assert_eq!(s["missed_by_resets"], 0, "{v}");
    assert!(s["healthz_us"]["requests_ok"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(s["healthz_us"]["errors"], 0, "{v}");
    assert!(
        s["retry_advice"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["min_ms"] == 150),
        "{v}"
    );
    assert_eq!(v["web"]["reconnects"], 30, "{v}");
    running.stop();
}

#[test]
fn idle_websocket_and_sse_connections_subscribe_and_hold() {
    let (running, resp, http) = corecast(|_| {});
    let http = http.to_string();
    for mode in ["ws", "sse"] {
        let out = Command::new(env!("CARGO_BIN_EXE_corecast-bench"))
            .args(["--target", &resp.to_string(), "--http-target", &http])
            .args(["--sub-mode", mode, "--idle-conns", "300", "--threads", "2"])
            .args(["--hold-s", "0.3", "--json"])
            .output()
            .expect("run corecast-bench");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        assert_eq!(v["idle_conns"], 300, "{v}");
        assert_eq!(v["web"]["reconnects"], 0, "{v}");
    }
    running.stop();
}

#[test]
fn counts_add_up_against_corecast() {
    let cfg = corecast_broker::BrokerConfig {
        cpus: vec![0, 0],
        listeners: vec![
            corecast_broker::ListenerSpec {
                protocol: corecast_broker::Protocol::Resp,
                addr: "127.0.0.1:0".parse().unwrap(),
            },
            corecast_broker::ListenerSpec {
                protocol: corecast_broker::Protocol::Http,
                addr: "127.0.0.1:0".parse().unwrap(),
            },
        ],
        ..Default::default()
    };
    let running = corecast_broker::launch(cfg).expect("broker starts");
    scenarios(
        running
            .addr(corecast_broker::Protocol::Resp)
            .expect("a RESP listener"),
    );
    running.stop();
}

/// Starts `program args...` with `--port`-style argument `port_flag` on a free port and waits
/// until it accepts connections; the child is killed when the guard drops.
fn start_server(program: &str, port_flag: &str, args: &[&str]) -> (Child, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(program)
        .args(args)
        .args([port_flag, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} (apt-get install {program}): {e}"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{program} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

#[test]
fn counts_add_up_against_redis_server() {
    let (mut child, addr) = start_server(
        "redis-server",
        "--port",
        &["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    );
    scenarios(addr);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn counts_add_up_against_nats_server() {
    let (mut child, addr) = start_server("nats-server", "-p", &["-a", "127.0.0.1"]);
    scenarios_with(addr, &["--proto", "nats"]);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn counts_add_up_over_websocket_against_nats_server() {
    let ws_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = std::env::temp_dir().join(format!("bench-nats-ws-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        format!("websocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n}}\n"),
    )
    .unwrap();
    let (mut child, addr) = start_server(
        "nats-server",
        "-p",
        &["-a", "127.0.0.1", "-c", conf.to_str().unwrap()],
    );
    let ws = format!("127.0.0.1:{ws_port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&ws).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server websocket did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    scenarios_with(
        addr,
        &["--proto", "nats", "--sub-mode", "ws", "--http-target", &ws],
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(conf);
}

#[test]
fn raw_mode_counts_add_up() {
    let v = bench(
        "127.0.0.1:1".parse().unwrap(),
        &["--raw", "--subscribers", "30", "--channels", "3"],
    );
    check(&v, 10);
}
