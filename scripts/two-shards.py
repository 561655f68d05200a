#!/usr/bin/env python3
"""Two shards on two CPUs: cross-shard fan-out at full rate, against one shard, redis-server and
nats-server under the same conditions.

corecast runs with --shards 2 on CPUs 0 and 1; the load generator is not pinned and shares both
CPUs with it (the machine has two). For comparison the same scenarios run against corecast with
one shard, redis-server and nats-server, each pinned to CPU 0, with the load generator again
unpinned. Per
run the table gives delivered messages/s, loss, how the subscribers split over the shards, ring
overflows, and the CPU time the broker and the load generator used (from /proc), which is what
says where the limit is.

Requires redis-server and nats-server (Debian), taskset, and release builds:
    cargo build --release -p corecast-server -p corecast-bench
Usage: scripts/two-shards.py [--duration 3] [--repeat 3] [--out FILE.md]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import BIN, fmt_rate, free_port, wait_port, write_report  # noqa: E402

SCENARIOS = [
    ("fan-out 1×1000, 64 B", ["--subscribers", "1000", "--channels", "1", "--payload", "64"]),
    ("100 channels × 10 subs, 64 B", ["--subscribers", "1000", "--channels", "100", "--payload", "64"]),
    ("50 publishers × 50 channels × 20 subs, 64 B", ["--subscribers", "1000", "--channels", "50", "--publishers", "50", "--payload", "64"]),
]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """User + system CPU seconds of a process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICKS


def stats(http_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/stats", timeout=5) as r:
        return json.load(r)


def start(kind):
    port = free_port()
    if kind == "redis-server":
        cmd = ["taskset", "-c", "0", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--maxclients", "20000"]
        http = None
    elif kind == "nats-server":
        # Pinned to one CPU, the Go runtime sizes GOMAXPROCS to it.
        cmd = ["taskset", "-c", "0", "nats-server", "-a", "127.0.0.1", "-p", str(port)]
        http = None
    else:
        http = free_port()
        shards = ["--cores", "0,1"] if kind == "corecast 2 shards" else ["--shards", "1"]
        pin = [] if kind == "corecast 2 shards" else ["taskset", "-c", "0"]
        cmd = pin + [os.path.join(BIN, "corecast")] + shards + [
            "--resp-listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http}", "--log", "warn"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port, http


def run(kind, args, duration):
    proc, port, http = start(kind)
    try:
        before_broker = cpu_s(proc.pid)
        bench = subprocess.Popen(
            [os.path.join(BIN, "corecast-bench"), "--json", "--duration-s", str(duration),
             "--warmup-s", "1", "--target", f"127.0.0.1:{port}"] + args
            + (["--proto", "nats"] if kind == "nats-server" else []),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Sample subscriber placement mid-run (after the warm-up), while everyone is connected.
        time.sleep(1 + duration / 2)
        placement = None
        if http:
            s = stats(http)
            placement = [sh["subscriptions"] for sh in s["shards"]]
        bench_cpu = 0.0
        try:
            bench_cpu = cpu_s(bench.pid)
        except OSError:
            pass
        out, err = bench.communicate(timeout=120)
        broker_cpu = cpu_s(proc.pid) - before_broker
        ring_full = stats(http)["total"]["ring_full"] if http else None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    if bench.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else "failed"}
    res = json.loads(out.strip().splitlines()[-1])
    res.update(placement=placement, ring_full=ring_full, broker_cpu_s=broker_cpu,
               bench_cpu_s_at_half=bench_cpu)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--out")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per cell; the median (by delivered rate) is reported, since the "
                         "unpinned load generator makes single runs swing widely")
    a = ap.parse_args()
    kinds = ["redis-server", "nats-server", "corecast 1 shard", "corecast 2 shards"]
    lines = ["| scenario | " + " | ".join(kinds) + " | 2 shards ÷ 1 shard | 2 shards ÷ redis | 2 shards ÷ nats | 2-shard placement (subs per shard), ring_full, broker CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    everything = {}
    for name, args in SCENARIOS:
        res = {}
        for k in kinds:
            runs = [run(k, args, a.duration) for _ in range(a.repeat)]
            ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["delivered_per_s"])
            res[k] = ok[len(ok) // 2] if len(ok) == len(runs) else next(r for r in runs if "error" in r)
            res[k]["all_delivered_per_s"] = [r.get("delivered_per_s") for r in runs]
        everything[name] = res
        print(f"done: {name}: " + ", ".join(f"{k} {r.get('delivered_per_s', r.get('error'))}" for k, r in res.items()), file=sys.stderr)
        if any("error" in r or not r["delivered_per_s"] for r in res.values()):
            lines.append(f"| {name} | " + " | ".join(str(res[k].get("error", "ok")) for k in kinds) + " | | | | |")
            continue
        d = {k: res[k]["delivered_per_s"] for k in kinds}
        lost = sum(res[k]["lost"] + res[k]["reordered"] + res[k]["duplicated"] for k in kinds)
        two = res["corecast 2 shards"]
        detail = f"{two['placement']}, {two['ring_full']}, {two['broker_cpu_s']:.1f} of {2 * (a.duration + 1):.0f} CPU-s"
        lines.append(f"| {name} | " + " | ".join(fmt_rate(d[k]) for k in kinds)
                     + f" | {d['corecast 2 shards'] / d['corecast 1 shard']:.2f} | {d['corecast 2 shards'] / d['redis-server']:.2f}"
                     + f" | {d['corecast 2 shards'] / d['nats-server']:.2f} | {detail} |"
                     + ("" if lost == 0 else f" (lost/reordered/duplicated {lost})"))
    write_report(lines, everything, a.out)


if __name__ == "__main__":
    main()
