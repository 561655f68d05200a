#!/usr/bin/env python3
"""Where an idle subscribed connection's memory goes: corecast's RSS growth per connection,
split by mapping, plus the kernel's slab growth, for one or more connection counts.

For each N in --conns: starts a fresh corecast pinned to --broker-cpu, reads its memory, has
corecast-bench hold N idle connections (each SUBSCRIBEd to its own channel, `idle.<i>`) from
--load-cpu, reads again once every subscription is confirmed, and prints the growth per
connection: VmRSS, RssAnon, each mapping's Rss (from /proc/PID/smaps, labelled by size so the
pre-sized tables and the receive-buffer area can be told apart), and the kernel slab caches
that grew (both ends of every connection are on this machine: the client's sockets are
counted too; see the split in the output).

Usage: scripts/idle_memory.py [--bin DIR] [--conns 2000,5000,10000] [--max-connections 19000]
                              [--shards 1] [--repeat 1] [--smaps] [--slab] [-- EXTRA BROKER ARGS]

With two or more counts it also prints the least-squares slope of RSS growth over N (what one
more connection costs) and the intercept (memory touched once, spread over N by the
per-count figures).

The default is compare.py's memory scenario (1 shard, --max-connections 19000); extra
arguments after `--` go to corecast (e.g. `-- --recv-buffers 16`).
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import free_port, wait_port  # noqa: E402


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmData"):
                out[k] = int(v.split()[0])
    return out


def smaps(pid):
    """{(start, label): rss_kb} for every mapping."""
    maps = {}
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                name = parts[5] if len(parts) > 5 else "[anon]"
                cur = (start, f"{name} {(end - start) // 1024} KiB")
                maps[cur] = 0
            elif parts[0] == "Rss:" and cur is not None:
                maps[cur] = int(parts[1])
    return maps


def slab():
    """{cache: bytes in use} from /proc/slabinfo (active objects x object size)."""
    out = {}
    with open("/proc/slabinfo") as f:
        for line in f.readlines()[2:]:
            p = line.split()
            out[p[0]] = int(p[1]) * int(p[3])
    return out


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0])
    return out


def one(a, n, extra):
    cp, hp = free_port(), free_port()
    broker = subprocess.Popen(
        ["taskset", "-c", str(a.broker_cpu), os.path.join(a.bin, "corecast"),
         "--shards", str(a.shards), "--resp-listen", f"127.0.0.1:{cp}",
         "--http-listen", f"127.0.0.1:{hp}", "--max-connections", str(a.max_connections),
         "--log", "warn"] + extra,
        stdout=subprocess.DEVNULL)
    try:
        wait_port(cp)
        time.sleep(0.5)
        s0, m0, k0, mi0 = status(broker.pid), smaps(broker.pid), slab(), meminfo()
        holder = subprocess.Popen(
            ["taskset", "-c", str(a.load_cpu), os.path.join(a.bin, "corecast-bench"),
             "--target", f"127.0.0.1:{cp}", "--idle-conns", str(n), "--hold-s", str(a.hold_s)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in holder.stderr:
            if line.startswith("holding"):
                break
        time.sleep(0.5)
        s1, m1, k1, mi1 = status(broker.pid), smaps(broker.pid), slab(), meminfo()
        holder.wait(timeout=120)
    finally:
        broker.terminate()
        broker.wait(timeout=10)
    res = {"n": n, "status": {k: (s1[k] - s0.get(k, 0)) * 1024 / n for k in s1}}
    res["before_kb"] = s0["VmRSS"]
    res["smaps"] = sorted(((m1.get(k, 0) - m0.get(k, 0)) * 1024 / n, k[1], k[0])
                          for k in set(m0) | set(m1) if m1.get(k, 0) != m0.get(k, 0))
    res["slab"] = sorted(((k1.get(c, 0) - k0.get(c, 0)) / n, c)
                         for c in set(k0) | set(k1) if abs(k1.get(c, 0) - k0.get(c, 0)) > n * 4)
    res["meminfo"] = {k: (mi1[k] - mi0[k]) * 1024 / n
                      for k in ("Slab", "SUnreclaim", "KernelStack", "PageTables", "MemFree")}
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--conns", default="2000,5000,10000,15000")
    ap.add_argument("--max-connections", type=int, default=19000)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--broker-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--hold-s", type=float, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--smaps", action="store_true", help="per-mapping RSS growth")
    ap.add_argument("--slab", action="store_true", help="kernel slab growth (both ends)")
    ap.add_argument("extra", nargs="*", help="extra corecast arguments (after --)")
    a = ap.parse_args()
    points = []
    for n in (int(x) for x in a.conns.split(",")):
        for _ in range(a.repeat):
            r = one(a, n, a.extra)
            st = r["status"]
            points.append((n, st["VmRSS"] * n))
            print(f"N={n:>6}  VmRSS +{st['VmRSS']:7.1f} B/conn  RssAnon +{st['RssAnon']:7.1f}  "
                  f"RssFile +{st['RssFile']:6.1f}  (RSS before {r['before_kb']} KiB)")
            if a.smaps:
                for per, label, start in reversed(r["smaps"]):
                    print(f"    {per:8.1f} B/conn  {start:#x} {label}")
            if a.slab:
                mi = r["meminfo"]
                print(f"    kernel (both ends): Slab +{mi['Slab']:.0f} B/conn "
                      f"(unreclaimable {mi['SUnreclaim']:.0f}), PageTables +{mi['PageTables']:.1f}, "
                      f"MemFree {mi['MemFree']:+.0f}")
                for per, c in reversed(r["slab"]):
                    print(f"      {per:8.1f} B/conn  {c}")
            sys.stdout.flush()
    if len({n for n, _ in points}) >= 2:
        # Least squares of total growth over N: the slope is what one more connection costs;
        # the intercept is memory the connections made the shard touch once (its receive
        # buffers, table indexes), which the per-connection figure at one N spreads over N.
        k = len(points)
        mx = sum(n for n, _ in points) / k
        my = sum(g for _, g in points) / k
        slope = sum((n - mx) * (g - my) for n, g in points) / sum((n - mx) ** 2 for n, _ in points)
        print(f"per connection (slope): {slope:.1f} B; fixed: {(my - slope * mx) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
