//! Shutdown of the real binary: on SIGTERM every WebSocket client gets a close frame (1001,
//! going away) after what was already queued for it, and the connection then closes.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

#[test]
fn sigterm_sends_websocket_clients_a_going_away_close_after_their_queued_data() {
    let mut server = Server::start(2, &[]);
    let mut subscribers: Vec<WsClient> = (0..4)
        .map(|i| {
            let mut ws = WsClient::connect(server.http);
            ws.sub("news", i);
            ws
        })
        .collect();
    // One that subscribed to nothing gets the close too.
    let mut idle = WsClient::connect(server.http);
    for i in 0..3 {
        let (status, body) = http_post(
            server.http,
            "/pub?ch=news",
            Some("application/json"),
            format!("{{\"n\":{i}}}").as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
    }
    server.signal(libc::SIGTERM);
    for ws in &mut subscribers {
        let (before, reason) = ws.expect_close(1001);
        assert_eq!(reason, "server shutting down");
        let data: Vec<serde_json::Value> = before
            .iter()
            .filter(|f| f.opcode == 1)
            .map(|f| serde_json::from_slice(&f.payload).unwrap())
            .collect();
        let ns: Vec<&serde_json::Value> = data.iter().map(|m| &m["data"]["n"]).collect();
        assert_eq!(
            ns,
            [0, 1, 2],
            "queued messages come before the close: {data:?}"
        );
    }
    let (before, reason) = idle.expect_close(1001);
    assert!(before.iter().all(|f| f.opcode != 1), "{before:?}");
    assert_eq!(reason, "server shutting down");
    let status = server
        .terminate_within(Duration::from_secs(5))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
}

/// The same seen by a client corecast did not write: Python `websockets` reports the
/// server's close code and reason.
#[test]
fn python_websockets_sees_1001_on_sigterm() {
    require(
        "the Python package websockets (13 or later)",
        "python3",
        &["-c", "import websockets.asyncio.client"],
    );
    let mut server = Server::start(1, &[]);
    let script = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main():
    async with connect(sys.argv[1], open_timeout=5, close_timeout=5) as ws:
        await ws.send(json.dumps({"op": "sub", "ch": "news", "id": 1}))
        ok = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ok["op"] == "ok", ok
        print("subscribed", flush=True)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed:
            pass
        print(json.dumps({"code": ws.close_code, "reason": ws.close_reason}), flush=True)

asyncio.run(main())
"#;
    let mut child = Command::new("timeout")
        .args(["30", "python3", "-c", script])
        .arg(format!("ws://{}/ws", server.http))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().expect("a line").unwrap(), "subscribed");
    server.signal(libc::SIGTERM);
    let closed: serde_json::Value =
        serde_json::from_str(&lines.next().expect("the close").unwrap()).unwrap();
    assert_eq!(
        closed,
        serde_json::json!({"code": 1001, "reason": "server shutting down"})
    );
    assert!(child.wait().unwrap().success());
    let status = server
        .terminate_within(Duration::from_secs(5))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
}
