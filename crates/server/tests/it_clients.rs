//! redis-py (PyPI `redis`, installed by .ci/run), a client nobody here wrote, drives
//! corecast in RESP2, in RESP3, and in whatever redis-py defaults to (RESP3 since redis-py
//! 8, which opens every connection with `HELLO 3`). The same script runs against
//! redis-server first, so its expectations are Redis's own.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::{RedisServer, Server};

fn redis_py(addr: SocketAddr, protocol: &str) -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/redis_py_client.py");
    let out = Command::new("timeout")
        .args(["120", "python3", script])
        .arg(addr.port().to_string())
        .arg(protocol)
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn redis_py_works_in_resp2_and_resp3() {
    let redis = RedisServer::start();
    for protocol in ["2", "3", "default"] {
        if let Err(e) = redis_py(redis.addr, protocol) {
            panic!("the script fails against redis-server itself (protocol {protocol}):\n{e}");
        }
    }
    for shards in [1, 2] {
        let server = Server::start(shards, &[]);
        for protocol in ["2", "3", "default"] {
            match redis_py(server.resp, protocol) {
                Ok(out) => assert!(out.contains("ok (redis-py"), "{out}"),
                Err(e) => panic!(
                    "redis-py (protocol {protocol}) against corecast with {shards} shard(s):\n{e}\ncorecast log:\n{}",
                    server.log()
                ),
            }
        }
    }
}
