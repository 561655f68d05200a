#!/usr/bin/env python3
"""Side-by-side benchmark: redis-server and nats-server vs corecast (1 shard) vs the raw ideal
sender.

Brokers run pinned to one CPU (--broker-cpu, default 0), the load generator to another
(--load-cpu, default 1), each scenario against each target in one go, and a Markdown table
with ratios goes to stdout (and --out). Requires: redis-server and nats-server (Debian), taskset, and
release builds: cargo build --release -p corecast-server -p corecast-bench.

Usage: scripts/compare.py [--duration 3] [--repeat 3] [--out FILE.md] [--svg FILE.svg] [--skip-memory]
                          [--baseline PATH/TO/corecast]

--baseline runs a second corecast binary (an earlier build) as one more target,
"corecast-before", interleaved with the others, so a change is measured before and after in
the same rounds of the same noisy machine. --corecast-args "--recv-buffers 128" passes options
to this build's corecast only (with --baseline naming the same binary: an A/B of a default).

--repeat N runs every scenario N times, the targets taking turns within each round (so a noisy
stretch of the machine hits all of them), and reports two tables from the same runs: each
target's median run and its best run (by delivered rate, or by p99 in the latency scenario),
then every run's figure. Identical runs differ by up to 2.5x on the development machine, whose
noise only ever slows a run down; single runs are not a record.

--svg draws the latency scenario's percentile curves (corecast vs redis-server vs raw) from
the histograms the load generator reports.
"""
import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")

SCENARIOS = [
    ("fan-out 1×1000, 64 B", ["--subscribers", "1000", "--channels", "1", "--payload", "64"]),
    ("fan-out 1×1000, 1024 B", ["--subscribers", "1000", "--channels", "1", "--payload", "1024"]),
    ("100 channels × 10 subs, 64 B", ["--subscribers", "1000", "--channels", "100", "--publishers", "1", "--payload", "64"]),
    ("50 publishers × 50 channels × 20 subs, 64 B", ["--subscribers", "1000", "--channels", "50", "--publishers", "50", "--payload", "64"]),
    ("latency: 100 msg/s to 1000 subs, 64 B", ["--subscribers", "1000", "--channels", "1", "--payload", "64", "--rate", "100"]),
    # Latency under load: fixed rates where redis-server runs near its limit, so the figure
    # says how each broker batches its sends when its core is busy, not how fast its code is.
    ("latency under load: 2000 msg/s to 1000 subs, 64 B", ["--subscribers", "1000", "--channels", "1", "--payload", "64", "--rate", "2000"]),
    ("latency under load: 800 msg/s to 1000 subs, 1024 B", ["--subscribers", "1000", "--channels", "1", "--payload", "1024", "--rate", "800"]),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# The peers, in table order; corecast is compared with each.
PEERS = ["redis-server", "nats-server"]
TARGETS = PEERS + ["corecast", "raw"]
# What the load generator needs to speak each broker's protocol.
PROTO_ARGS = {"redis-server": [], "nats-server": ["--proto", "nats"], "corecast": []}


def start_corecast(binary, pin, extra=()):
    cp, hp = free_port(), free_port()
    proc = subprocess.Popen(
        pin + [binary, "--shards", "1",
               "--resp-listen", f"127.0.0.1:{cp}", "--http-listen", f"127.0.0.1:{hp}",
               "--max-connections", "19000", "--log", "warn"] + list(extra),
        stdout=subprocess.DEVNULL)
    return proc, cp


# Extra options for this build's corecast (--corecast-args), e.g. to A/B a default against
# --baseline pointing at the same binary.
CORECAST_ARGS = []


def start_brokers(cpu, baseline=None):
    rp, np_ = free_port(), free_port()
    pin = ["taskset", "-c", str(cpu)]
    redis = subprocess.Popen(
        pin + ["redis-server", "--port", str(rp), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--maxclients", "20000"],
        stdout=subprocess.DEVNULL)
    # Pinned to one CPU, the Go runtime sizes GOMAXPROCS to it.
    nats = subprocess.Popen(pin + ["nats-server", "-a", "127.0.0.1", "-p", str(np_)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    brokers = {"redis-server": (redis, rp), "nats-server": (nats, np_)}
    if baseline:
        brokers["corecast-before"] = start_corecast(baseline, pin)
    brokers["corecast"] = start_corecast(os.path.join(BIN, "corecast"), pin, CORECAST_ARGS)
    for _, port in brokers.values():
        wait_port(port)
    return brokers


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid, thread_name=None):
    """utime + stime of a process, or of its threads called `thread_name`."""
    paths = [f"/proc/{pid}/stat"]
    if thread_name:
        paths = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().strip() == thread_name:
                        paths.append(f"/proc/{pid}/task/{tid}/stat")
            except OSError:
                pass
    total = 0
    for p in paths:
        with open(p) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        total += int(parts[11]) + int(parts[12])
    return total


def bench(args, load_cpu, duration, extra, broker_pid=None):
    """Runs one load; also samples the broker's CPU use over the middle of the measured
    window (the raw sender's thread when broker_pid is None), so rates can be put per
    broker CPU-second: when the load generator is the bottleneck, that is the figure that
    still says how much work each broker spends per message."""
    cmd = ["taskset", "-c", str(load_cpu), os.path.join(BIN, "corecast-bench"), "--json",
           "--duration-s", str(duration), "--warmup-s", "1"] + args + extra
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy = None
    try:
        time.sleep(1.3)
        pid, thread = (broker_pid, None) if broker_pid else (proc.pid, "raw-sender")
        t0, c0 = time.time(), cpu_ticks(pid, thread)
        time.sleep(max(duration - 0.6, 0.5))
        busy = (cpu_ticks(pid, thread) - c0) / TICKS / (time.time() - t0)
    except (OSError, ValueError):
        pass
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else "failed"}
    res = json.loads(out.strip().splitlines()[-1])
    res["broker_busy"] = busy
    return res


def fmt_rate(v):
    return f"{v / 1e6:.2f} M/s" if v >= 1e5 else f"{v / 1e3:.1f} K/s"


COLORS = {"redis-server": "#d62728", "nats-server": "#2ca02c", "corecast": "#1f77b4",
          "corecast-before": "#9467bd", "raw": "#7f7f7f"}


def svg_curves(title, series):
    """Percentile curves, HdrHistogram style: x is log10(1 / (1 - p)), y is latency (log)."""
    W, H, L, R, T, B = 720, 420, 70, 150, 40, 50
    def xpos(p):
        v = 5.7 if p >= 100 else min(math.log10(1 / (1 - p / 100)), 5.0)
        return L + (W - L - R) * v / 5.7
    vals = [max(v, 1) for pts in series.values() for _, v in pts]
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    lo, hi = math.floor(lo), math.ceil(hi) if hi > math.floor(lo) else math.floor(lo) + 1
    def ypos(us):
        return T + (H - T - B) * (1 - (math.log10(max(us, 1)) - lo) / (hi - lo))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
    for d in range(int(lo), int(hi) + 1):
        y = ypos(10 ** d)
        label = f"{10 ** d} µs" if d < 3 else f"{10 ** (d - 3)} ms" if d < 6 else f"{10 ** (d - 6)} s"
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for p, label in [(0, "0%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"), (99.99, "99.99%"), (99.999, "99.999%"), (100, "max")]:
        x = xpos(p)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">percentile (end-to-end latency from the scheduled send time)</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS.get(name, "#2ca02c")
        path = " ".join(f"{'M' if j == 0 else 'L'}{xpos(p):.1f},{ypos(v):.1f}" for j, (p, v) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(f'<rect x="{W - R + 15}" y="{T + 10 + i * 20}" width="14" height="3" fill="{color}"/>')
        out.append(f'<text x="{W - R + 35}" y="{T + 15 + i * 20}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--broker-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--svg")
    ap.add_argument("--only", help="run only scenarios whose name contains this")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--idle-conns", type=int, default=15000)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per scenario and target; each target's median and best runs are reported")
    ap.add_argument("--baseline", help="another corecast binary to run beside this build")
    ap.add_argument("--corecast-args", default="",
                    help="extra options for this build's corecast (space-separated)")
    a = ap.parse_args()
    CORECAST_ARGS.extend(a.corecast_args.split())
    if a.baseline:
        PEERS.append("corecast-before")
        TARGETS.insert(TARGETS.index("corecast"), "corecast-before")
        PROTO_ARGS["corecast-before"] = []

    brokers = start_brokers(a.broker_cpu, a.baseline)
    rows = []
    raw_json = {}
    try:
        for name, args in SCENARIOS:
            if a.only and a.only not in name:
                continue
            runs = {t: [] for t in TARGETS}
            for _ in range(max(a.repeat, 1)):
                for target, (proc, port) in brokers.items():
                    runs[target].append(bench(args, a.load_cpu, a.duration,
                                              ["--target", f"127.0.0.1:{port}"] + PROTO_ARGS[target],
                                              proc.pid))
                runs["raw"].append(bench(args, a.load_cpu, a.duration,
                                         ["--raw", "--raw-cpu", str(a.broker_cpu)]))
            rows.append((name, runs))
            raw_json[name] = {t: pick_run(v, "latency" in name) for t, v in runs.items()}
            print(f"done: {name}", file=sys.stderr)
        memory = {}
        slope = {}
        if not a.skip_memory:
            # Two counts, each on fresh processes (what the throughput runs left in the
            # allocators is not per-connection): the figure at the larger count, as before,
            # and the slope between them, which is what one more connection costs without the
            # memory a shard touches once (receive buffers, table indexes) spread over N.
            counts = [max(a.idle_conns // 3, 1), a.idle_conns]
            growth = {}
            for n in counts:
                for proc, _ in brokers.values():
                    proc.terminate()
                    proc.wait(timeout=10)
                brokers = start_brokers(a.broker_cpu, a.baseline)
                time.sleep(0.5)
                for target, (proc, port) in brokers.items():
                    before = rss_kb(proc.pid)
                    holder = subprocess.Popen(
                        ["taskset", "-c", str(a.load_cpu), os.path.join(BIN, "corecast-bench"),
                         "--target", f"127.0.0.1:{port}", "--idle-conns", str(n), "--hold-s", "4"]
                        + PROTO_ARGS[target],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                    # The holder says "holding" once every connection's SUBSCRIBE is confirmed.
                    for line in holder.stderr:
                        if line.startswith("holding"):
                            break
                    time.sleep(0.5)
                    after = rss_kb(proc.pid)
                    holder.wait(timeout=120)
                    growth[(target, n)] = (after - before) * 1024
            for target in brokers:
                memory[target] = growth[(target, counts[1])] / counts[1]
                slope[target] = ((growth[(target, counts[1])] - growth[(target, counts[0])])
                                 / (counts[1] - counts[0]))
            memory["_slope"] = slope
            memory["_counts"] = counts
    finally:
        for proc, _ in brokers.values():
            proc.terminate()
            proc.wait(timeout=10)

    picks = ["median", "best"] if a.repeat > 1 else ["median"]
    lines = []
    for pick in picks:
        if a.repeat > 1:
            lines += [f"{pick.capitalize()} of {a.repeat} runs per target:", ""]
        picked = [(name, {t: pick_run(v, "latency" in name, pick) for t, v in runs.items()})
                  for name, runs in rows]
        lines += table(picked, memory, a.idle_conns) + [""]
        if pick == "median" and a.svg:
            for name, res in picked:
                if "latency:" in name and not any("error" in r for r in res.values()):
                    with open(a.svg, "w") as f:
                        f.write(svg_curves(name, {t: res[t]["latency_curve_us"] for t in TARGETS}))
    if a.repeat > 1:
        lines += ["Every run, in order (M msg/s, or p99 ms in the latency scenario):", ""]
        for name, runs in rows:
            res = {t: pick_run(v, "latency" in name) for t, v in runs.items()}
            if any("error" in r for r in res.values()):
                continue
            scale = 1e3 if "latency" in name else 1e6
            lines.append(f"- {name}: " + "; ".join(
                f"{t} " + " / ".join(f"{v / scale:.2f}" for v in res[t]["runs"]) for t in TARGETS))
    write_report(lines, raw_json, a.out)


def table(rows, memory, idle_conns):
    """The Markdown table of one pick of runs: a row per scenario, then memory."""
    lines = ["| scenario | " + " | ".join(TARGETS) + " | "
             + " | ".join(f"corecast ÷ {p if p.startswith('corecast') else p.split('-')[0]}" for p in PEERS)
             + " | corecast ÷ raw"
             + " | per broker CPU-second (busy) |",
             "|---" * (len(TARGETS) + len(PEERS) + 3) + "|"]
    for name, res in rows:
        if any("error" in r for r in res.values()):
            lines.append(f"| {name} | " + " | ".join(str(res[t].get("error", "ok")) for t in TARGETS)
                         + " |" * (len(PEERS) + 2))
            continue
        if "latency" in name:
            p = {t: res[t]["latency_us"] for t in res}
            # A target with no samples could not keep the rate (the raw sender publishes one
            # message to every subscriber before the next, and falls behind at high rates).
            def cell(t):
                if p[t]["count"] == 0:
                    return f"no samples (published {res[t]['published_per_s']:.0f}/s)"
                return f"p50 {p[t]['p50']/1000:.2f} ms, p99 {p[t]['p99']/1000:.2f} ms, p99.9 {p[t]['p999']/1000:.2f} ms"
            def ratio(t):
                if p[t]["count"] == 0 or p["corecast"]["count"] == 0:
                    return "–"
                return f"p99 {p['corecast']['p99'] / max(p[t]['p99'], 1):.2f}"
            lines.append(f"| {name} | " + " | ".join(cell(t) for t in TARGETS) + " | "
                         + " | ".join(ratio(t) for t in PEERS + ["raw"]) + " | |")
            continue
        d = {t: res[t]["delivered_per_s"] for t in res}
        lost = sum(res[t]["lost"] for t in res)
        busy = {t: res[t].get("broker_busy") or 0 for t in res}
        eff = {t: d[t] / busy[t] if busy[t] else 0 for t in res}
        eff_cell = " / ".join(f"{fmt_rate(eff[t])} ({busy[t] * 100:.0f}%)" for t in TARGETS)
        lines.append(f"| {name} | " + " | ".join(fmt_rate(d[t]) for t in TARGETS) + " | "
                     + " | ".join(f"{d['corecast'] / d[t]:.2f}" if d[t] else "–" for t in PEERS + ["raw"])
                     + f" | {eff_cell} |" + ("" if lost == 0 else f" (lost {lost})"))
    if memory:
        slope, counts = memory["_slope"], memory["_counts"]
        lines.append(f"| RSS growth per idle subscribed connection ({idle_conns}) | "
                     + " | ".join(f"{memory[t]:.0f} B" if t in memory else "–" for t in TARGETS) + " | "
                     + " | ".join(f"{memory['corecast'] / max(memory[t], 1):.2f}" for t in PEERS) + " | – | |")
        lines.append(f"| per connection: slope from {counts[0]} to {counts[1]} | "
                     + " | ".join(f"{slope[t]:.0f} B" if t in slope else "–" for t in TARGETS) + " | "
                     + " | ".join(f"{slope['corecast'] / max(slope[t], 1):.2f}" for t in PEERS) + " | – | |")
    return lines


def pick_run(results, latency, pick="median"):
    """One target's median or best run of a scenario (by p99 latency, lowest best, or by
    delivered rate, highest best), with every run's figure kept under "runs" for the record.
    An error in any run wins.

    Best-of-N is there because this machine's noise only ever slows a run down (identical
    runs of the fan-out rows land on one of two speeds, see docs/benchmarks.md), so the best
    run is the closest estimate of what each target can do; every target gets the same
    treatment, and the median is the default."""
    for r in results:
        if "error" in r:
            return r
    key = (lambda r: r["latency_us"]["p99"]) if latency else (lambda r: r["delivered_per_s"])
    ordered = sorted(results, key=key)
    if pick == "best":
        chosen = dict(ordered[0] if latency else ordered[-1])
    else:
        chosen = dict(ordered[len(ordered) // 2])
    chosen["runs"] = [key(r) for r in results]
    chosen["lost"] = max(r["lost"] for r in results)
    return chosen


def write_report(lines, data, out):
    """Prints the Markdown table; with `out`, also writes it followed by the raw results
    as JSON inside an HTML comment (so the file renders as the table alone)."""
    table = "\n".join(lines)
    print(table)
    if out:
        with open(out, "w") as f:
            f.write(table + "\n\n<!-- raw JSON -->\n<!--\n" + json.dumps(data, indent=1) + "\n-->\n")


if __name__ == "__main__":
    main()
