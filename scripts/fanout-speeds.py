#!/usr/bin/env python3
"""Which speed a fan-out run lands on, and what the machine was doing: the measurements
behind "What sets the speed" in docs/benchmarks.md.

Rounds alternate corecast (1 shard, CPU 0) and the raw ideal sender (CPU 0), the load
generator on CPU 1, 1000 subscribers of one channel. For each run it prints the delivered rate,
how busy each CPU was (/proc/stat), and for corecast the shard's sends per second, bytes per
SENDMSG and `send_complete` p50 from /stats (the CPU a send costs). Between runs a memcpy probe
on CPU 0 copies 64 KiB blocks through a 16 MiB buffer: it falls from L3 speed to DRAM speed when
the host's other tenants take the shared L3.

Usage: scripts/fanout-speeds.py [--rounds 10] [--payload 1024] [--duration 3]
Requires release builds: cargo build --release -p corecast-server -p corecast-bench.
"""
import argparse
import json
import os
import subprocess
import time
import urllib.request

from compare import BIN, free_port, wait_port


def cpu_times():
    """(busy, idle) jiffies of CPU 0 and CPU 1."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("cpu0", "cpu1"):
                v = list(map(int, parts[1:8]))
                idle = v[3] + v[4]
                out[parts[0]] = (sum(v) - idle, idle)
    return out


def busy_pct(a, b, cpu):
    busy, idle = b[cpu][0] - a[cpu][0], b[cpu][1] - a[cpu][1]
    return 100 * busy / max(busy + idle, 1)


def memcpy_probe_gbs(mib=16, seconds=0.25):
    """GB/s of 64 KiB copies cycling through `mib` MiB (run pinned to CPU 0 by the caller)."""
    block = 64 << 10
    src = memoryview(bytearray(os.urandom(256 << 10)))
    dst = memoryview(bytearray(mib << 20))
    off, soff, copied = 0, 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(64):
            dst[off:off + block] = src[soff:soff + block]
            off = (off + block) % len(dst)
            soff = (soff + block) % len(src)
            copied += block
    return copied / (time.perf_counter() - t0) / 1e9


def stats(http_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/stats", timeout=2) as r:
        return json.load(r)["total"]


def one_run(target_args, payload, duration, http_port=None):
    cmd = ["taskset", "-c", "1", os.path.join(BIN, "corecast-bench"), "--json",
           "--duration-s", str(duration), "--warmup-s", "1", "--subscribers", "1000",
           "--channels", "1", "--payload", str(payload)] + target_args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(2)
    c0, s0 = cpu_times(), stats(http_port) if http_port else None
    time.sleep(1)
    c1, s1 = cpu_times(), stats(http_port) if http_port else None
    out, _ = proc.communicate(timeout=60)
    res = json.loads(out.strip().splitlines()[-1])
    line = (f"{res['delivered_per_s'] / 1e6:5.2f} M/s  cpu0 {busy_pct(c0, c1, 'cpu0'):3.0f}%"
            f"  cpu1 {busy_pct(c0, c1, 'cpu1'):3.0f}%")
    if s0 and s1:
        sends = s1["send_batches"] - s0["send_batches"]
        per_send = (s1["bytes_out"] - s0["bytes_out"]) // max(sends, 1)
        p50_ms = s1["latency_us"]["send_complete"]["p50"] / 1000
        line += f"  sends/s {sends}  bytes/send {per_send}  send_complete p50 {p50_ms:.1f} ms"
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--payload", type=int, default=1024)
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args()
    os.sched_setaffinity(0, {0})  # the probe runs on the broker's CPU, between runs
    for r in range(1, a.rounds + 1):
        rp, hp = free_port(), free_port()
        corecast = subprocess.Popen(
            ["taskset", "-c", "0", os.path.join(BIN, "corecast"), "--shards", "1",
             "--resp-listen", f"127.0.0.1:{rp}", "--http-listen", f"127.0.0.1:{hp}",
             "--max-connections", "19000", "--log", "warn"], stdout=subprocess.DEVNULL)
        try:
            wait_port(rp)
            probe = memcpy_probe_gbs()
            cc = one_run(["--target", f"127.0.0.1:{rp}"], a.payload, a.duration, hp)
        finally:
            corecast.terminate()
            corecast.wait(timeout=10)
        raw = one_run(["--raw", "--raw-cpu", "0"], a.payload, a.duration)
        print(f"round {r:2}  memcpy 16 MiB {probe:5.1f} GB/s\n  corecast {cc}\n  raw      {raw}",
              flush=True)


if __name__ == "__main__":
    main()
