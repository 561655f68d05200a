#!/usr/bin/env python3
"""Measures what a client trickling one large command costs the broker.

Starts corecast (one shard, pinned to CPU 0, loopback ports), sends a multibulk command of
N one-byte arguments ten arguments (70 bytes) per send with a pause between sends, and
prints the broker's CPU time (user + system, from /proc/<pid>/stat) over the trickle. A
broker that re-frames the whole incomplete command on every receive pays for every packet
in proportion to what already arrived; one that resumes pays for what each packet added.

    cargo build --release -p corecast-server
    python3 scripts/trickle-input.py [--binary target/release/corecast] [--args 140000]
"""
import argparse
import os
import socket
import subprocess
import time


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/corecast")
    ap.add_argument("--args", type=int, default=140_000)
    ap.add_argument("--pause-ms", type=float, default=0.1)
    a = ap.parse_args()
    resp, http = free_port(), free_port()
    broker = subprocess.Popen(
        ["taskset", "-c", "0", a.binary, "--shards", "1",
         "--resp-listen", f"127.0.0.1:{resp}", "--http-listen", f"127.0.0.1:{http}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        broker.stdout.readline()  # the ready line
        s = socket.create_connection(("127.0.0.1", resp))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"*%d\r\n" % a.args)
        chunk = b"$1\r\na\r\n" * 10
        before, start = cpu_seconds(broker.pid), time.time()
        for _ in range(a.args // 10):
            s.sendall(chunk)
            time.sleep(a.pause_ms / 1000)
        s.settimeout(30)
        reply = s.recv(64)
        print(f"reply {reply[:40]!r}... broker CPU {cpu_seconds(broker.pid) - before:.2f} s "
              f"over {time.time() - start:.2f} s of trickle")
    finally:
        broker.kill()


if __name__ == "__main__":
    main()
