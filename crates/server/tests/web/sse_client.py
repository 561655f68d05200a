#!/usr/bin/env python3
"""An SSE client driven line by line, for crates/server/tests/it_web_clients.rs.

The event-stream parsing is the PyPI `sseclient-py` library's (installed by .ci/run), over
the standard library's http.client. Like most non-browser clients, sseclient-py does not
reconnect by itself and does not dispatch blocks without data (the `retry:` advice and
id-only events), so the test resumes by opening a new stream with the last id it saw.

Commands arrive on stdin, one JSON object a line:
  {"cmd":"open","conn":"S","port":PORT,"path":"/sse?ch=a&ch=b","last_event_id":"..."}
  {"cmd":"close","conn":"S"}     (cuts the stream from the client's side)
Everything that happens is printed on stdout, one JSON object a line:
  {"conn":"S","ev":"open","status":200,"headers":{"content-type":...}}
  {"conn":"S","ev":"event","event":"message","id":"...","data":"..."}
  {"conn":"S","ev":"end"}        (the stream ended, whoever ended it)
  {"conn":"S","ev":"error","error":"..."}
The script exits when stdin closes (so it never outlives the test) or after a watchdog.
"""

import http.client
import json
import os
import socket
import sys
import threading

try:
    from sseclient import SSEClient
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(
        f"sse_client.py: the PyPI package `sseclient-py` is missing ({e}); run .ci/run",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)

WATCHDOG_S = 90
out_lock = threading.Lock()


def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class Stream:
    def __init__(self, name, cmd):
        self.name = name
        self.conn = http.client.HTTPConnection("127.0.0.1", cmd["port"], timeout=30)
        self.cmd = cmd
        # The socket itself: http.client lets go of it (conn.sock = None) once a response
        # that is read to the end of the connection starts, so close() keeps its own.
        self.sock = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        name = self.name
        try:
            headers = {"Accept": "text/event-stream"}
            if self.cmd.get("last_event_id") is not None:
                headers["Last-Event-ID"] = self.cmd["last_event_id"]
            self.conn.connect()
            self.sock = self.conn.sock
            self.conn.request("GET", self.cmd["path"], headers=headers)
            resp = self.conn.getresponse()
            emit(
                {
                    "conn": name,
                    "ev": "open",
                    "status": resp.status,
                    "headers": {k.lower(): v for k, v in resp.getheaders()},
                }
            )
            chunks = iter(lambda: resp.read1(65536), b"")
            for event in SSEClient(chunks).events():
                emit(
                    {
                        "conn": name,
                        "ev": "event",
                        "event": event.event,
                        "id": event.id,
                        "data": event.data,
                    }
                )
        except (OSError, http.client.HTTPException, ValueError) as e:
            # A cut from our side (close) shows up here; the test knows when it cut.
            emit({"conn": name, "ev": "error", "error": repr(e)})
        emit({"conn": name, "ev": "end"})

    def close(self):
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(10)
        self.conn.close()


def watchdog():
    print("sse_client.py: watchdog expired", file=sys.stderr, flush=True)
    os._exit(4)


def main():
    timer = threading.Timer(WATCHDOG_S, watchdog)
    timer.daemon = True
    timer.start()
    streams = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        name = cmd.get("conn")
        if cmd["cmd"] == "open":
            streams[name] = Stream(name, cmd)
        elif cmd["cmd"] == "close":
            streams.pop(name).close()
        else:
            emit({"conn": name, "ev": "error", "error": f"unknown command {cmd!r}"})
    for s in streams.values():
        s.close()
    os._exit(0)


if __name__ == "__main__":
    main()
