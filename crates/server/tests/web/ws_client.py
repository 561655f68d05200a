#!/usr/bin/env python3
"""A WebSocket client driven line by line, for crates/server/tests/it_web_clients.rs.

It uses the PyPI `websockets` library (installed by .ci/run), a client corecast did not
write, so the handshake, framing, masking, pings and closing handshake are someone else's.

Commands arrive on stdin, one JSON object a line:
  {"cmd":"open","conn":"A","url":"ws://127.0.0.1:PORT/ws"}
  {"cmd":"send","conn":"A","text":"<a text frame>"}
  {"cmd":"close","conn":"A"}          (a normal closing handshake)
Everything that happens is printed on stdout, one JSON object a line:
  {"conn":"A","ev":"open"}
  {"conn":"A","ev":"msg","text":"<the text frame as received>"}
  {"conn":"A","ev":"closed","code":1000,"reason":""}
  {"conn":"A","ev":"error","error":"..."}
The script exits when stdin closes (so it never outlives the test) or after a watchdog.
"""

import asyncio
import json
import sys

try:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(
        f"ws_client.py: the PyPI package `websockets` (13 or later) is missing ({e}); run .ci/run",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)

WATCHDOG_S = 90


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def pump(name, ws):
    try:
        async for message in ws:
            if isinstance(message, bytes):
                emit({"conn": name, "ev": "binary", "len": len(message)})
            else:
                emit({"conn": name, "ev": "msg", "text": message})
    except ConnectionClosed:
        pass
    except Exception as e:  # noqa: BLE001 - everything is reported
        emit({"conn": name, "ev": "error", "error": repr(e)})
    code = ws.close_code
    emit({"conn": name, "ev": "closed", "code": code, "reason": ws.close_reason or ""})


async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    conns = {}
    tasks = {}
    while True:
        line = await reader.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        name = cmd.get("conn")
        try:
            if cmd["cmd"] == "open":
                ws = await connect(cmd["url"], open_timeout=5, close_timeout=2, max_size=None)
                conns[name] = ws
                emit({"conn": name, "ev": "open"})
                tasks[name] = asyncio.create_task(pump(name, ws))
            elif cmd["cmd"] == "send":
                await conns[name].send(cmd["text"])
            elif cmd["cmd"] == "close":
                ws = conns.pop(name)
                await ws.close()
                await tasks.pop(name)
            else:
                emit({"conn": name, "ev": "error", "error": f"unknown command {cmd!r}"})
        except Exception as e:  # noqa: BLE001 - everything is reported
            emit({"conn": name, "ev": "error", "error": repr(e)})
    for ws in conns.values():
        await ws.close()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), WATCHDOG_S))
    except asyncio.TimeoutError:
        print("ws_client.py: watchdog expired", file=sys.stderr, flush=True)
        sys.exit(4)
