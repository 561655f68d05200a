#!/usr/bin/env python3
"""WebSocket/SSE benchmark record: corecast's web gateway against nats-server's WebSocket
listener, with corecast's RESP (and nats-server's native protocol) for reference, and the
gateway at scale (15,000 SSE/WS connections on one shard).

Brokers run pinned to --broker-cpu (default 0), the load generator (corecast-bench, the same
binary for every peer) to --load-cpu (default 1). Loopback only. Requires nats-server (2.9,
Debian), taskset, perf (only for the storm profile) and release builds:
cargo build --release -p corecast-server -p corecast-bench.

Usage: scripts/web_compare.py [--quick] [--repeat 3] [--gateway-repeat 1]
                              [--only fanout,latency,memory,broadcast,storm] [--no-perf]
                              [--noisy 0.1] [--noisy-retries 3] [--bin target/release]
                              [--out FILE.md] [--json-out FILE.json] [--logdir DIR]

Scenarios:
1. fanout: 1 publisher -> 1000 subscribers on one channel, closed loop (default window),
   64 B and 1 KiB: corecast ws, nats-server ws, corecast sse, corecast RESP, nats-server
   native. One corecast and one nats-server serve scenarios 1 and 2; in every round each
   target runs once, in an order rotated from round to round, so a noisy stretch of the
   machine hits all of them. Medians over rounds; ratios are of the medians, with the
   same-round (paired) ratios listed too.
2. latency: --rate 100 and 1000 msg/s, 1 -> 1000, 64 B, open loop: p50/p99/p99.9/max, each the
   median over rounds.
3. gateway scale, each run on a fresh corecast (one shard):
   a. memory: VmRSS growth per idle subscribed connection (SSE, WS; RESP and nats-server WS
      for reference) at two counts, and the slope between them.
   b. broadcast: 10 msg/s on ONE channel to 15,000 SSE subscribers for 60 s: latency and
      retention (bench reconnect/loss counters, corecast's /stats `sse_connections` gauge read
      just before the run ends).
   c. storm: the same, corecast with --history-size 1024, every SSE stream cut at once
      (--storm-at-s 10): time until all are back, retry advice per second, /healthz
      latency from the cut until all are back, missed/duplicated after resume, and corecast's
      and the load generator's CPU use per 0.5 s around the cut. If the /healthz p99 is 50 ms
      or more, one more storm run under `perf record` (corecast, and the load CPU as a whole,
      from the cut to +6 s) gives the top symbols (--no-perf skips it).
   Scenarios 3b and 3c also poll /healthz every 10 ms from this script (a thread pinned to
   the load CPU) over the whole measured run, and 3b adds two control runs delivering the
   same 150,000 events/s through narrower fan-outs (1000 x 150 msg/s, 5000 x 30 msg/s).

Each run also records the CPU time other processes on this shared machine used meanwhile
(and steal time), and the kernel's TcpExt drop counters, to flag noisy runs.

Every command line is recorded in the report. --quick: one round, shorter runs, smaller
idle counts (about 4 minutes instead of about 14-16, more when noisy runs are run again).
"""
import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import TICKS, cpu_ticks, free_port, rss_kb, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
CORECAST = os.path.join(BIN, "corecast")
BENCH = os.path.join(BIN, "corecast-bench")

# Every process this script starts, so that all of them are stopped (by PID) on the way out.
PROCS = []
# (what, command line) of every process started, in order.
COMMANDS = []


def rel(path):
    return os.path.relpath(path, ROOT) if path.startswith(ROOT) else path


def record_cmd(what, cmd):
    COMMANDS.append((what, " ".join(shlex.quote(rel(c)) for c in cmd)))


def spawn(what, cmd, **kw):
    record_cmd(what, cmd)
    p = subprocess.Popen(cmd, **kw)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    if p in PROCS:
        PROCS.remove(p)


def stop_all():
    for p in list(PROCS):
        try:
            stop(p)
        except Exception as e:  # keep stopping the others
            print(f"could not stop pid {p.pid}: {e}", file=sys.stderr)


class Broker:
    def __init__(self, kind, proc, ports, log):
        self.kind, self.proc, self.ports, self.log = kind, proc, ports, log

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        """corecast's /stats `total` object."""
        url = f"http://127.0.0.1:{self.ports['http']}/stats"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["total"]

    def stop(self):
        stop(self.proc)
        self.log_file.close()


def start_corecast(cfg, what, extra=()):
    rp, hp = free_port(), free_port()
    log = os.path.join(cfg.logdir, f"corecast-{len(COMMANDS):03d}.log")
    f = open(log, "w")
    cmd = ["taskset", "-c", str(cfg.broker_cpu), CORECAST, "--shards", "1",
           "--resp-listen", f"127.0.0.1:{rp}", "--http-listen", f"127.0.0.1:{hp}",
           "--max-connections", "19000"] + list(extra)
    b = Broker("corecast", spawn(what, cmd, stdout=f, stderr=subprocess.STDOUT),
               {"resp": rp, "http": hp}, log)
    b.log_file = f
    wait_port(rp)
    wait_port(hp)
    return b


def start_nats(cfg, what):
    np_, wp = free_port(), free_port()
    conf = os.path.join(cfg.logdir, f"nats-{len(COMMANDS):03d}.conf")
    with open(conf, "w") as f:
        f.write(f'listen: "127.0.0.1:{np_}"\nwebsocket {{\n listen: "127.0.0.1:{wp}"\n no_tls: true\n}}\n')
    log = os.path.join(cfg.logdir, f"nats-{len(COMMANDS):03d}.log")
    f = open(log, "w")
    # Pinned to one CPU, the Go runtime sizes GOMAXPROCS to it.
    b = Broker("nats", spawn(what, ["taskset", "-c", str(cfg.broker_cpu), "nats-server", "-c", conf],
                             stdout=f, stderr=subprocess.STDOUT),
               {"nats": np_, "ws": wp}, log)
    b.log_file = f
    wait_port(np_)
    wait_port(wp)
    return b


def target_args(target, cc, nats):
    """The load generator's options for one target."""
    if target.startswith("corecast"):
        mode = {"corecast ws": "ws", "corecast sse": "sse", "corecast RESP": "native"}[target]
        return ["--target", f"127.0.0.1:{cc.ports['resp']}",
                "--http-target", f"127.0.0.1:{cc.ports['http']}", "--sub-mode", mode]
    if target == "nats ws":
        return ["--proto", "nats", "--target", f"127.0.0.1:{nats.ports['nats']}",
                "--http-target", f"127.0.0.1:{nats.ports['ws']}", "--sub-mode", "ws"]
    if target == "nats native":
        return ["--proto", "nats", "--target", f"127.0.0.1:{nats.ports['nats']}"]
    raise ValueError(target)


def proc_ticks():
    """utime + stime of every process now, by pid."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                out[int(d)] = int(parts[11]) + int(parts[12])
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_snapshot():
    """For foreign_cpu: every process's CPU time, the machine's (/proc/stat: user + nice +
    system + irq + softirq, and steal), this script's own with its reaped children's, and the time."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    with open("/proc/self/stat") as f:
        me = f.read().rsplit(")", 1)[1].split()
    return {"procs": proc_ticks(), "busy": v[0] + v[1] + v[2] + v[5] + v[6], "steal": v[7],
            "self": sum(int(x) for x in me[11:15]), "wall": time.time()}


def foreign_cpu(before, ours):
    """CPU-seconds used since `before` by processes this script did not start (other
    people's, on this shared machine): from the processes alive at the end (one that started
    and ended in between is missed), and from the machine's total less this script's
    processes (which catches those, but also counts kernel work accounted to no process);
    and the hypervisor's steal time. A flag for noisy runs."""
    now = cpu_snapshot()
    scan = sum(v - before["procs"].get(pid, 0) for pid, v in now["procs"].items() if pid not in ours)
    mine = (now["self"] - before["self"]) + sum(
        now["procs"].get(pid, 0) - before["procs"].get(pid, 0) for pid in ours if pid != os.getpid())
    wall = now["wall"] - before["wall"]
    return {"other_cpu_s": round(scan / TICKS, 2),
            "other_cpu_s_total": round((now["busy"] - before["busy"] - mine) / TICKS, 2),
            "steal_s": round((now["steal"] - before["steal"]) / TICKS, 2),
            "wall_s": round(wall, 2)}


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_log(path):
    with open(path) as f:
        return [ANSI.sub("", l.rstrip("\n")) for l in f]


PROGRESS = re.compile(r"^\[\s*([\d.]+)s\] published")


def run_bench(cfg, what, args, broker=None, warmup=1.0, on_progress=None, timeout=600,
              on_spawn=None):
    """Runs corecast-bench pinned to the load CPU; returns its JSON line plus the command,
    the broker's CPU use over the measured window (from the progress lines, one a second),
    and the tail of stderr. `on_progress(t, now)` is called for every progress line (t:
    seconds since the measured run's start, warm-up included)."""
    cmd = ["taskset", "-c", str(cfg.load_cpu), BENCH, "--json"] + args
    snap0 = cpu_snapshot()
    p = spawn(what, cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cmd_text = COMMANDS[-1][1]
    if on_spawn:
        on_spawn(p.pid)
    marks = []
    tail = []

    def reader():
        for line in p.stderr:
            line = line.rstrip("\n")
            tail.append(line)
            del tail[:-40]
            m = PROGRESS.match(line)
            if m:
                t = float(m.group(1))
                if broker is not None:
                    try:
                        marks.append((t, time.time(), cpu_ticks(broker.pid), cpu_ticks(p.pid)))
                    except OSError:
                        pass
                if on_progress:
                    on_progress(t, time.time())

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        out = p.stdout.read()
        p.wait(timeout=timeout)
    finally:
        stop(p)
    th.join(timeout=10)
    res = {"cmd": cmd_text}
    res["foreign"] = foreign_cpu(snap0, {os.getpid(), p.pid} | {q.pid for q in PROCS})
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        res["error"] = next((l for l in reversed(tail) if l.strip()), f"exit {p.returncode}")
        res["stderr_tail"] = tail[-10:]
        return res
    res.update(json.loads(lines[-1]))
    measured = [m for m in marks if m[0] > warmup + 0.5]
    if len(measured) >= 2:
        (_, w0, c0, b0), (_, w1, c1, b1) = measured[0], measured[-1]
        res["broker_busy"] = (c1 - c0) / TICKS / (w1 - w0)
        res["bench_busy"] = (b1 - b0) / TICKS / (w1 - w0)
    res["stderr_tail"] = tail[-6:]
    return res


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_rate(v):
    if v is None:
        return "–"
    return f"{v / 1e6:.2f} M/s" if v >= 1e5 else f"{v / 1e3:.1f} K/s"


def ms(us):
    return "–" if us is None else f"{us / 1000:.2f}"


def errors_of(r):
    """Anything that should be zero in a run, as a short text ('' when clean)."""
    if "error" in r:
        return "ERROR: " + r["error"]
    bad = {k: r.get(k, 0) for k in ("lost", "duplicated", "reordered") if r.get(k, 0)}
    for k, v in (r.get("web") or {}).items():
        if v:
            bad[k] = v
    return ", ".join(f"{k} {v}" for k, v in bad.items())


# ---------------------------------------------------------------- scenarios 1 and 2

FANOUT_TARGETS = ["corecast ws", "nats ws", "corecast sse", "corecast RESP", "nats native"]


def noisy(r, cfg):
    """Whether other processes (or the hypervisor) took more than cfg.noisy of a CPU, on
    average, during the run."""
    f = r.get("foreign")
    if not f or not cfg.noisy:
        return False
    other = max(f["other_cpu_s"], f["other_cpu_s_total"]) + f["steal_s"]
    return other / max(f["wall_s"], 1e-3) > cfg.noisy


def rounds(cfg, title, base_args, targets, cc, nats, warmup):
    runs = {t: [] for t in targets}
    for r in range(cfg.repeat):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for t in order:
            broker = cc if t.startswith("corecast") else nats
            discarded = []
            while True:
                res = run_bench(cfg, f"{title} / {t} / round {r + 1}"
                                + (f" (again: noisy)" if discarded else ""),
                                base_args + target_args(t, cc, nats), broker, warmup)
                if not noisy(res, cfg) or len(discarded) >= cfg.noisy_retries:
                    break
                print(f"  {title} / {t} / round {r + 1}: other processes used "
                      f"{res['foreign']}; running it again", file=sys.stderr)
                discarded.append(res)
            res["round"] = r + 1
            res["discarded_noisy"] = discarded
            runs[t].append(res)
            e = errors_of(res)
            print(f"  {title} / {t} / round {r + 1}: "
                  + (fmt_rate(res.get("delivered_per_s")) if "error" not in res else "")
                  + (f" p99 {ms(res['latency_us']['p99'])} ms" if "latency_us" in res else "")
                  + (f"  [{e}]" if e else ""), file=sys.stderr)
    return runs


def foreign_line(labelled, cfg=None):
    """What other processes on this shared machine used during the runs (and, with cfg,
    which runs were discarded and run again because of it)."""
    xs = [(l, r["foreign"]) for l, r in labelled if r.get("foreign")]
    if not xs:
        return []
    def other(f):
        return max(f["other_cpu_s"], f["other_cpu_s_total"])
    total = sum(other(f) for _, f in xs)
    worst = max(xs, key=lambda x: other(x[1]))
    steal = sum(f["steal_s"] for _, f in xs)
    out = [f"Other processes on the machine (not started by this script) used {total:.1f} CPU-s "
           f"during the {len(xs)} runs kept (most in one run: {other(worst[1]):.1f} s, {worst[0]}); "
           f"steal {steal:.1f} s."]
    if cfg is not None:
        again = [(l, d["foreign"]) for l, r in labelled for d in r.get("discarded_noisy", [])]
        still = [l for l, r in labelled if noisy(r, cfg)]
        if again:
            out.append(f"Runs discarded and run again because others used more than "
                       f"{cfg.noisy * 100:.0f}% of a CPU meanwhile: {len(again)} ("
                       + "; ".join(f"{l}: {other(f):.1f} CPU-s + steal {f['steal_s']:.1f} s in "
                                   f"{f['wall_s']:.0f} s" for l, f in again) + ").")
        if still:
            out.append(f"Still noisy after {cfg.noisy_retries} retries (kept): " + "; ".join(still) + ".")
    return [" ".join(out), ""]


def paired(runs, a, b, key):
    """Same-round ratios a / b."""
    out = []
    for ra, rb in zip(runs[a], runs[b]):
        va, vb = key(ra), key(rb)
        out.append(va / vb if va is not None and vb else None)
    return out


def get_rate(r):
    return r.get("delivered_per_s") if "error" not in r else None


def get_p(q):
    return lambda r: r["latency_us"][q] if "error" not in r and r["latency_us"]["count"] else None


def ratio_table(runs, get, title, pairs):
    """Rows `a ÷ b`: the ratio of the medians of `get`, then every round's own ratio."""
    m = {t: med([get(r) for r in rs]) for t, rs in runs.items()}
    lines = [f"| {title} | of medians | same-round ratios |", "|---|---|---|"]
    for a, b, note in pairs:
        pr = paired(runs, a, b, get)
        lines.append(f"| {a} ÷ {b}{note} | "
                     + (f"{m[a] / m[b]:.2f}" if m[a] and m[b] else "–") + " | "
                     + " / ".join("–" if x is None else f"{x:.2f}" for x in pr) + " |")
    return lines + [""]


def fanout_section(cfg, cc, nats):
    lines = ["## 1. Fan-out, 1 publisher → 1000 subscribers, one channel, closed loop (window 256)", ""]
    data = {}
    for payload in (64, 1024):
        title = f"fan-out {payload} B"
        base = ["--subscribers", "1000", "--channels", "1", "--payload", str(payload),
                "--duration-s", str(cfg.fanout_s), "--warmup-s", "1"]
        runs = rounds(cfg, title, base, FANOUT_TARGETS, cc, nats, 1.0)
        data[title] = runs
        lines += [f"### {payload} B payload", "",
                  "| target | deliveries/s (median) | every round | lost | errors | broker CPU busy (median) | load generator CPU busy (median) | deliveries per broker CPU-second (median) |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in FANOUT_TARGETS:
            rs = runs[t]
            lost = sum(r.get("lost", 0) for r in rs)
            errs = "; ".join(e for e in (errors_of(r) for r in rs) if e) or "none"
            busy = med([r.get("broker_busy") for r in rs])
            lbusy = med([r.get("bench_busy") for r in rs])
            lines.append(f"| {t} | {fmt_rate(med([get_rate(r) for r in rs]))} | "
                         + " / ".join(fmt_rate(get_rate(r)) for r in rs)
                         + f" | {lost} | {errs} | {'–' if busy is None else f'{busy * 100:.0f}%'}"
                         + f" | {'–' if lbusy is None else f'{lbusy * 100:.0f}%'}"
                         + f" | {fmt_rate(med([get_rate(r) / r['broker_busy'] if get_rate(r) and r.get('broker_busy') else None for r in rs]))} |")
        lines.append("")
        target = {64: 2.5, 1024: 3.0}[payload]
        lines += ratio_table(runs, get_rate, "ratio", [
            ("corecast ws", "nats ws", f" (target ≥ {target})"),
            ("corecast sse", "corecast ws", ""),
            ("corecast ws", "corecast RESP", ""),
            ("nats ws", "nats native", "")])
        lines += foreign_line([(f"{t} round {r['round']}", r) for t in FANOUT_TARGETS for r in runs[t]], cfg)
    return lines, data


def latency_section(cfg, cc, nats):
    lines = ["## 2. Latency at a fixed rate, 1 publisher → 1000 subscribers, 64 B, open loop", "",
             f"{cfg.latency_s:g} s measured after 1 s warm-up per run; µs from each message's "
             "scheduled send time to its arrival (no coordinated omission); each figure is the "
             "median over rounds of that percentile.", ""]
    data = {}
    for rate in (100, 1000):
        title = f"latency {rate} msg/s"
        base = ["--subscribers", "1000", "--channels", "1", "--payload", "64",
                "--rate", str(rate), "--duration-s", str(cfg.latency_s), "--warmup-s", "1"]
        runs = rounds(cfg, title, base, FANOUT_TARGETS, cc, nats, 1.0)
        data[title] = runs
        lines += [f"### {rate} msg/s ({rate * 1000} deliveries/s)", "",
                  "| target | p50 ms | p99 ms | p99.9 ms | max ms | p99 every round (ms) | published/s | lost | errors |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in FANOUT_TARGETS:
            rs = runs[t]
            errs = "; ".join(e for e in (errors_of(r) for r in rs) if e) or "none"
            lines.append(f"| {t} | " + " | ".join(ms(med([get_p(q)(r) for r in rs]))
                                                  for q in ("p50", "p99", "p999", "max"))
                         + " | " + " / ".join(ms(get_p("p99")(r)) for r in rs)
                         + f" | {med([r.get('published_per_s') for r in rs]) or 0:.0f}"
                         + f" | {sum(r.get('lost', 0) for r in rs)} | {errs} |")
        lines.append("")
        target = {100: "≤ 0.33", 1000: "≤ 0.25"}[rate]
        lines += ratio_table(runs, get_p("p99"), "p99 ratio", [
            ("corecast ws", "nats ws", f" (target {target})"),
            ("corecast ws", "corecast RESP", " (target ≤ 1.2)"),
            ("corecast sse", "corecast ws", ""),
            ("nats ws", "nats native", "")])
        lines += foreign_line([(f"{t} round {r['round']}", r) for t in FANOUT_TARGETS for r in runs[t]], cfg)
    return lines, data


# ---------------------------------------------------------------- scenario 3a: memory

MEM_MODES = ["sse", "ws", "RESP", "nats ws"]


def idle_run(cfg, mode, n, r):
    what = f"memory / {mode} / {n} / round {r}"
    if mode == "nats ws":
        b = start_nats(cfg, what + " (broker)")
        args = ["--proto", "nats", "--target", f"127.0.0.1:{b.ports['nats']}",
                "--http-target", f"127.0.0.1:{b.ports['ws']}", "--sub-mode", "ws"]
    else:
        b = start_corecast(cfg, what + " (broker)")
        args = ["--target", f"127.0.0.1:{b.ports['resp']}",
                "--http-target", f"127.0.0.1:{b.ports['http']}",
                "--sub-mode", {"sse": "sse", "ws": "ws", "RESP": "native"}[mode]]
    out = {"n": n}
    holder = None
    ns0 = netstat()
    try:
        time.sleep(0.5)
        before = rss_kb(b.pid)
        cmd = ["taskset", "-c", str(cfg.load_cpu), BENCH, "--json", "--idle-conns", str(n),
               "--hold-s", "3"] + args
        holder = spawn(what, cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out["cmd"] = COMMANDS[-1][1]
        held = False
        tail = []
        for line in holder.stderr:
            tail.append(line.rstrip())
            if line.startswith("holding"):
                held = True
                break
        if held:
            # The gauges in /stats are updated once a second.
            time.sleep(1.2)
            after = rss_kb(b.pid)
            out.update(before_kb=before, after_kb=after, growth_b=(after - before) * 1024,
                       per_conn_b=(after - before) * 1024 / n)
            if b.kind == "corecast":
                s = b.stats()
                out["stats"] = {k: s[k] for k in ("connections", "sse_connections", "ws_connections",
                                                  "subscriptions", "rejected_connections")}
        rest, err = holder.communicate(timeout=120)
        tail += err.splitlines()
        if not held or holder.returncode != 0:
            out["error"] = (tail[-1] if tail else f"exit {holder.returncode}")
        j = [l for l in rest.splitlines() if l.startswith("{")]
        if j:
            out["bench"] = json.loads(j[-1])
        out["netstat"] = netstat_delta(ns0)
    finally:
        if holder is not None:
            stop(holder)
        b.stop()
    e = out.get("error")
    print(f"  {what}: " + (f"{out['per_conn_b']:.0f} B/conn" if "per_conn_b" in out else "")
          + (f"  [{e}]" if e else ""), file=sys.stderr)
    return out


def memory_section(cfg):
    counts = cfg.idle_counts
    data = {m: {n: [] for n in counts} for m in MEM_MODES}
    for r in range(cfg.repeat):
        for mode in MEM_MODES:
            for n in counts:
                data[mode][n].append(idle_run(cfg, mode, n, r + 1))
    lines = ["## 3a. Idle subscribed connections: broker RSS growth per connection", "",
             f"A fresh broker per run (one shard / one CPU), VmRSS read 0.5 s after start and "
             f"1.2 s after the load generator says every connection is subscribed (each on its "
             f"own channel `idle.<i>`). Kernel socket memory is not in RSS. {cfg.repeat} round(s); "
             "medians.", "",
             "| connections | " + " | ".join(f"{m} B/conn" for m in MEM_MODES) + " |",
             "|---" * (len(MEM_MODES) + 1) + "|"]
    for n in counts:
        cells = []
        for m in MEM_MODES:
            rs = data[m][n]
            v = med([x.get("per_conn_b") for x in rs])
            cells.append(("–" if v is None else f"{v:.0f}") + " (" + " / ".join(
                f"{x['per_conn_b']:.0f}" if "per_conn_b" in x else "err" for x in rs) + ")")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    slope = {}
    for m in MEM_MODES:
        per_round = []
        for a, b in zip(data[m][counts[0]], data[m][counts[-1]]):
            if "growth_b" in a and "growth_b" in b:
                per_round.append((b["growth_b"] - a["growth_b"]) / (counts[-1] - counts[0]))
        slope[m] = (med(per_round), per_round)
    lines.append(f"| slope {counts[0]}→{counts[-1]} | " + " | ".join(
        ("–" if slope[m][0] is None else f"{slope[m][0]:.0f}") + " ("
        + " / ".join(f"{x:.0f}" for x in slope[m][1]) + ")" for m in MEM_MODES) + " |")
    lines += ["", "Target: corecast SSE and WS ≤ 1.5 KiB (1536 B) per connection. "
              "Cells: median (every round). RSS before → after at the larger count, first round: "
              + "; ".join(f"{m} {data[m][counts[-1]][0].get('before_kb', '?')} → "
                          f"{data[m][counts[-1]][0].get('after_kb', '?')} KiB" for m in MEM_MODES),
              ""]
    gauges = [(m, n, x["stats"]) for m in MEM_MODES for n in counts for x in data[m][n][:1] if "stats" in x]
    lines.append("corecast /stats while held (first round): " + "; ".join(
        f"{m} {n}: connections {s['connections']}, sse {s['sse_connections']}, ws {s['ws_connections']}, "
        f"subscriptions {s['subscriptions']}, rejected {s['rejected_connections']}" for m, n, s in gauges))
    lines.append("")
    drops = [(m, n, fmt_netstat(x.get("netstat"))) for m in MEM_MODES for n in counts for x in data[m][n]
             if fmt_netstat(x.get("netstat")) != "none"]
    lines += ["Kernel TCP drops (TcpExt deltas, machine-wide) during the idle runs: "
              + ("; ".join(f"{m} {n}: {d}" for m, n, d in drops) if drops else "none"), ""]
    errs = [(m, n, x["error"]) for m in MEM_MODES for n in counts for x in data[m][n] if "error" in x]
    if errs:
        lines += ["Errors: " + "; ".join(f"{m} {n}: {e}" for m, n, e in errs), ""]
    return lines, data


# ---------------------------------------------------------------- scenario 3b/3c

STAT_KEYS = ("connections", "sse_connections", "sse_streams", "subscriptions", "accepted",
             "rejected_connections", "slow_consumer_disconnects", "dropped", "http_errors",
             "resumes", "resume_resets", "replay_walks", "sse_retry_ms", "history_bytes",
             "accept_errors", "recv_no_buffers", "sq_stalls")


NETSTAT_KEYS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "TCPReqQFullDrop",
                "TCPAbortOnMemory", "TCPAbortOnData")


def netstat():
    """The kernel's TcpExt counters (machine-wide; loopback: both ends are ours)."""
    with open("/proc/net/netstat") as f:
        rows = f.read().splitlines()
    out = {}
    for names, vals in zip(rows[::2], rows[1::2]):
        if names.startswith("TcpExt:"):
            out.update(zip(names.split()[1:], (int(v) for v in vals.split()[1:])))
    return {k: out.get(k, 0) for k in NETSTAT_KEYS}


def netstat_delta(before):
    after = netstat()
    return {k: after[k] - before[k] for k in NETSTAT_KEYS}


def fmt_turn(r):
    """corecast's own turn histogram (whole run): p99.9 / max in ms."""
    t = (r.get("broker_latency_us") or {}).get("turn")
    if not t or not t.get("count"):
        return "–"
    return f"{t['p999'] / 1000:.1f} / {t['max'] / 1000:.1f}"


def fmt_netstat(d):
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items() if v) or "none"


class CpuSampler(threading.Thread):
    """Samples a process's CPU time every `every` s into (wall, ticks)."""

    def __init__(self, pid, every=0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.done = pid, every, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.samples.append((time.time(), cpu_ticks(self.pid)))
            except OSError:
                return
            self.done.wait(self.every)

    def series(self, t0, start, end, step=0.5):
        """Busy fraction per `step` s from t0+start to t0+end."""
        out = []
        s = self.samples
        t = start
        while t < end:
            a = [x for x in s if x[0] >= t0 + t]
            b = [x for x in s if x[0] >= t0 + t + step]
            if not a or not b:
                break
            (w0, c0), (w1, c1) = a[0], b[0]
            out.append((t, (c1 - c0) / TICKS / max(w1 - w0, 1e-3)))
            t += step
        return out


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(-(-q * len(xs) // 1)) - 1))]


class HealthPoller(threading.Thread):
    """GET /healthz every 10 ms on one keep-alive connection, from a thread pinned to the
    load CPU; latency counts from each request's scheduled time (as the load generator's own
    storm poller does), so a slow answer also delays, and charges, the next ones."""

    def __init__(self, port, cpu, every=0.01):
        super().__init__(daemon=True)
        self.port, self.cpu, self.every = port, cpu, every
        self.samples, self.done = [], threading.Event()

    def run(self):
        try:
            os.sched_setaffinity(0, {self.cpu})  # this thread only
        except OSError:
            pass
        conn = None
        t0, wall0 = time.monotonic(), time.time()
        k = 0
        while not self.done.is_set():
            due = t0 + k * self.every
            k += 1
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok, conn = False, None
            done = time.monotonic()
            self.samples.append((wall0 + (due - t0), done - due, done - sent, ok))

    def summary(self, start, end):
        """From the scheduled time (what an operator's probe every 10 ms sees, its backlog
        included) and round trip (request written to answer read: one probe alone)."""
        sel = [x for x in self.samples if start <= x[0] < end]
        lat = [x[1] for x in sel if x[3]]
        rtt = [x[2] for x in sel if x[3]]
        return {"n": len(lat), "errors": len(sel) - len(lat),
                "p50_ms": _ms(pct(lat, 0.5)), "p99_ms": _ms(pct(lat, 0.99)),
                "max_ms": _ms(max(lat) if lat else None),
                "rtt_p50_ms": _ms(pct(rtt, 0.5)), "rtt_p99_ms": _ms(pct(rtt, 0.99)),
                "rtt_max_ms": _ms(max(rtt) if rtt else None)}


def _ms(s):
    return None if s is None else s * 1000


def fmt_health(h, secs=None):
    """Round trip p50 / p99 / max (answers; per second when `secs`)."""
    if not h or not h["n"]:
        return "–"
    rate = f", {h['n'] / secs:.0f}/s" if secs else ""
    return (f"{h['rtt_p50_ms']:.1f} / {h['rtt_p99_ms']:.1f} / {h['rtt_max_ms']:.1f} ({h['n']} answers{rate}"
            + (f", {h['errors']} errors" if h["errors"] else "") + ")")


def gateway_run(cfg, what, extra_broker, bench_args, duration, warmup=1.0, storm_at=None,
                perf=False):
    """gateway_run_once, run again (up to cfg.noisy_retries times) while other processes
    took more than cfg.noisy of a CPU meanwhile; the discarded runs are kept."""
    discarded = []
    while True:
        res = gateway_run_once(cfg, what + (" (again: noisy)" if discarded else ""), extra_broker,
                               bench_args, duration, warmup, storm_at, perf)
        if not noisy(res, cfg) or len(discarded) >= cfg.noisy_retries:
            res["discarded_noisy"] = discarded
            return res
        print(f"  {what}: other processes used {res.get('foreign')}; running it again", file=sys.stderr)
        discarded.append({k: v for k, v in res.items() if k not in ("broker_log",)})


def gateway_run_once(cfg, what, extra_broker, bench_args, duration, warmup=1.0, storm_at=None,
                     perf=False):
    """One run against a fresh corecast: /stats near the start and just before the end of
    the measured run, CPU samples, and (perf) a profile of the storm window."""
    cc = start_corecast(cfg, what + " (broker)", extra_broker)
    result = {}
    snaps = {}
    state = {"start": None}
    perf_proc = []
    sampler = CpuSampler(cc.pid)
    sampler.start()
    bench_sampler = []
    poller = HealthPoller(cc.ports["http"], cfg.load_cpu)

    def on_spawn(pid):
        bench_sampler.append(CpuSampler(pid))
        bench_sampler[0].start()

    def on_progress(t, now):
        if state["start"] is None:
            state["start"] = now - t  # wall time of the measured run's start (warm-up included)
            poller.start()
        if "early" not in snaps and t >= warmup + 1:
            snaps["early"] = cc.stats()
        if "end" not in snaps and t >= warmup + duration - 1.5:
            snaps["end"] = cc.stats()
        if perf and storm_at is not None and not perf_proc and t >= warmup + storm_at - 1.5:
            # The cut is at warmup + storm_at; profile from just before it to +6 s (the
            # streams come back after the 2 s retry advice and take 1.5-3 s to).
            delay = state["start"] + warmup + storm_at - 0.2 - time.time()
            if delay > 0:
                time.sleep(delay)
            out = os.path.join(cfg.logdir, "storm.perf.data")
            cmd = ["taskset", "-c", str(cfg.load_cpu), "perf", "record", "-e", "cpu-clock",
                   "-F", "999", "-g", "-p", str(cc.pid), "-o", out, "--", "sleep", "6.2"]
            perf_proc.append((spawn(what + " (perf, corecast)", cmd, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL), out, COMMANDS[-1][1]))
            # And the load CPU as a whole: what the load generator spends the storm on.
            out = os.path.join(cfg.logdir, "storm.loadcpu.perf.data")
            cmd = ["taskset", "-c", str(cfg.load_cpu), "perf", "record", "-e", "cpu-clock",
                   "-F", "999", "-C", str(cfg.load_cpu), "-o", out, "--", "sleep", "6.2"]
            perf_proc.append((spawn(what + " (perf, load CPU)", cmd, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL), out, COMMANDS[-1][1]))

    ns0 = netstat()
    try:
        result = run_bench(cfg, what, bench_args + [
            "--target", f"127.0.0.1:{cc.ports['resp']}",
            "--http-target", f"127.0.0.1:{cc.ports['http']}"], cc, warmup, on_progress,
            timeout=900, on_spawn=on_spawn)
        result["netstat"] = netstat_delta(ns0)
        result["stats"] = {k: {s: v[s] for s in STAT_KEYS} for k, v in snaps.items()}
        lat = cc.stats()["latency_us"]
        result["broker_latency_us"] = lat
        if perf_proc:
            for p, _, _ in perf_proc:
                p.wait(timeout=60)
                PROCS.remove(p)
            result["perf"] = {"cmd": perf_proc[0][2], "data": perf_proc[0][1]}
            if len(perf_proc) > 1:
                result["perf_load"] = {"cmd": perf_proc[1][2], "data": perf_proc[1][1]}
        if state["start"] is not None:
            s0, end = state["start"] + warmup, state["start"] + warmup + duration
            poller.done.set()
            poller.join(timeout=10)
            result["healthz_measured"] = poller.summary(s0, end)
            if storm_at is not None and "storm" in result:
                cut = s0 + storm_at
                back = cut + (result["storm"]["all_resubscribed_ms"] or 1e9) / 1000
                result["cpu_around_cut"] = sampler.series(cut, -1.0, 9.0)
                if bench_sampler:
                    result["bench_cpu_around_cut"] = bench_sampler[0].series(cut, -1.0, 9.0)
                result["healthz_phases"] = {
                    "before the cut": poller.summary(s0, cut),
                    "cut until all back": poller.summary(cut, back),
                    "after all back": poller.summary(back, end),
                }
                result["healthz_by_half_s"] = [
                    (t / 2, poller.summary(cut + t / 2, cut + t / 2 + 0.5)) for t in range(-2, 16)]
    finally:
        sampler.done.set()
        for b in bench_sampler:
            b.done.set()
        poller.done.set()
        for p, _, _ in perf_proc:
            if p in PROCS:
                stop(p, signal.SIGINT)
        cc.stop()
    result["broker_log"] = read_log(cc.log)
    return result


def broadcast_section(cfg):
    lines = [f"## 3b. Broadcast: 10 msg/s on one channel to {cfg.big_n} SSE subscribers, "
             f"{cfg.broadcast_s:g} s", ""]
    plan = [(f"{cfg.big_n} subs × 10 msg/s, {cfg.broadcast_s:g} s, round {r + 1}", cfg.big_n, 10,
             cfg.broadcast_s) for r in range(cfg.gateway_repeat)]
    # The same 150,000 deliveries/s through narrower fan-outs: what in the figures above
    # follows the width of one message's fan-out rather than the delivery rate.
    plan += [(f"control: {n} subs × {rate} msg/s, {cfg.control_s:g} s", n, rate, cfg.control_s)
             for n, rate in ((1000, 150), (5000, 30))]
    runs = []
    for label, n, rate, dur in plan:
        what = f"broadcast sse / {label}"
        res = gateway_run(cfg, what, [], [
            "--sub-mode", "sse", "--subscribers", str(n), "--channels", "1",
            "--payload", "64", "--rate", str(rate), "--duration-s", str(dur),
            "--warmup-s", "1"], dur)
        res["row"] = label
        res["subs"] = n
        runs.append(res)
        print(f"  {what}: p99 {ms(get_p('p99')(res))} ms [{errors_of(res)}]", file=sys.stderr)
    lines += ["| run | p50 ms | p99 ms | p99.9 ms | max ms | delivered/s | lost | bench reconnects / connect failures / HTTP errors | seq missed / dup | corecast sse_connections 1 s in → 1.5 s before the end | corecast slow-consumer disconnects | corecast publish→send p50 / p99 / max ms | broker CPU busy | /healthz round trip p50 / p99 / max ms (answers, of 100/s scheduled) | kernel TCP drops |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['row']} | ERROR: {r['error']} |" + " |" * 12)
            continue
        w = r.get("web", {})
        st = r.get("stats", {})
        e, n = st.get("early", {}), st.get("end", {})
        pts = r["broker_latency_us"]["publish_to_send"]
        lines.append(
            f"| {r['row']} | " + " | ".join(ms(r["latency_us"][q]) for q in ("p50", "p99", "p999", "max"))
            + f" | {fmt_rate(r['delivered_per_s'])} | {r['lost']}"
            + f" | {w.get('reconnects')} / {w.get('connect_failures')} / {w.get('http_errors')}"
            + f" | {w.get('seq_missed')} / {w.get('seq_duplicated')}"
            + f" | {e.get('sse_connections', '?')} → {n.get('sse_connections', '?')}"
            + f" | {n.get('slow_consumer_disconnects', '?')}"
            + f" | {ms(pts['p50'])} / {ms(pts['p99'])} / {ms(pts['max'])}"
            + f" | {(r.get('broker_busy') or 0) * 100:.0f}%"
            + f" | {fmt_health(r.get('healthz_measured'), r['duration_s'])}"
            + f" | {fmt_netstat(r.get('netstat'))} |")
    lines += ["", "Latency columns are the load generator's, end to end (from each message's scheduled "
              "send time), on the other CPU. publish→send is corecast's own figure from /stats (the "
              "publish parsed to the send carrying it submitted, per send batch, oldest frame, whole "
              "run). /healthz is polled every 10 ms over the measured run by this script (a thread "
              "pinned to the load CPU, one keep-alive connection, the next request when the previous "
              "is answered, at most 100/s): the round trip of each request, and how many were answered "
              "(fewer than 100/s: the probe fell behind; measured from the schedule, as the load "
              "generator's storm poller does, its latency grows without bound then, see the JSON). "
              "Kernel TCP drops: TcpExt counter deltas over the run (machine-wide). Retained = sse_connections "
              f"{cfg.big_n} just before the end and 0 reconnects/failures. The control rows deliver "
              "the same 150,000 events/s through narrower fan-outs.", ""]
    lines += foreign_line([(r["row"], r) for r in runs], cfg)
    return lines, runs


def storm_section(cfg):
    lines = [f"## 3c. Reconnect storm: {cfg.big_n} SSE subscribers on one channel, 10 msg/s, "
             f"every stream cut at once {cfg.storm_at:g} s into the run; corecast --history-size 1024", ""]
    runs = []
    bench_args = ["--sub-mode", "sse", "--subscribers", str(cfg.big_n), "--channels", "1",
                  "--payload", "64", "--rate", "10", "--duration-s", str(cfg.storm_s),
                  "--warmup-s", "1", "--storm-at-s", str(cfg.storm_at)]
    for r in range(cfg.gateway_repeat):
        what = f"storm sse {cfg.big_n} / round {r + 1}"
        res = gateway_run(cfg, what, ["--history-size", "1024"], bench_args, cfg.storm_s,
                          storm_at=cfg.storm_at)
        runs.append(res)
        h = (res.get("storm") or {}).get("healthz_us") or {}
        print(f"  {what}: /healthz p99 {ms(h.get('p99'))} ms [{errors_of(res)}]", file=sys.stderr)
    p99s = [((r.get("storm") or {}).get("healthz_us") or {}).get("p99") for r in runs]
    perf_run = None
    if cfg.perf and any(p is None or p >= 50000 for p in p99s):
        what = "storm sse (perf record)"
        perf_run = gateway_run(cfg, what, ["--history-size", "1024"], bench_args, cfg.storm_s,
                               storm_at=cfg.storm_at, perf=True)
        perf_run["perf_report"] = perf_report(perf_run.get("perf"))
        perf_run["perf_load_report"] = perf_report(perf_run.get("perf_load"), load=True)
        print(f"  {what}: done", file=sys.stderr)
    all_runs = runs + ([perf_run] if perf_run else [])
    lines += ["| run | cut | all back after (ms) | per conn p50 / p99 / max (ms) | /healthz p50 / p99 / max (ms) | /healthz answers (errors) | missed / duplicated after resume | resets | bench reconnects / connect failures / HTTP errors | sse_connections at end | corecast resumes / resets / replay walks | corecast turn p99.9 / max (ms) | kernel TCP drops |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(all_runs):
        name = "perf" if r is perf_run else str(i + 1)
        s = r.get("storm")
        if "error" in r or not s:
            lines.append(f"| {name} | ERROR: {r.get('error', 'no storm')} |" + " |" * 11)
            continue
        h = s.get("healthz_us") or {}
        w = r.get("web", {})
        n = r.get("stats", {}).get("end", {})
        rm = s["resubscribe_ms"]
        allb = s["all_resubscribed_ms"]
        lines.append(
            f"| {name} | {s['cut']} at {s['cut_at_s']:.1f} s | "
            + ("never" if allb is None else f"{allb:.0f}")
            + f" | {rm['p50']:.0f} / {rm['p99']:.0f} / {rm['max']:.0f}"
            + f" | {ms(h.get('p50'))} / {ms(h.get('p99'))} / {ms(h.get('max'))}"
            + f" | {h.get('requests_ok')} ({h.get('errors')})"
            + f" | {s['missed_after_resume']} / {s['duplicated_after_resume']}"
            + f" | {s['resets']} (skipping {s['missed_by_resets']})"
            + f" | {w.get('reconnects')} / {w.get('connect_failures')} / {w.get('http_errors')}"
            + f" | {n.get('sse_connections', '?')}"
            + f" | {n.get('resumes', '?')} / {n.get('resume_resets', '?')} / {n.get('replay_walks', '?')}"
            + f" | {fmt_turn(r)}"
            + f" | {fmt_netstat(r.get('netstat'))} |")
    lines += ["", "Times from the cut (a connection's time includes the retry advice it waits out first); /healthz polled every 10 ms on its own keep-alive connection "
              "from the cut until every stream is back (the poller is a thread of the load "
              "generator, on the load CPU; latency counts from each request's scheduled time). "
              "Target: /healthz p99 < 50 ms; missed and duplicated after resume 0. corecast turn: "
              "`latency_us.turn` from /stats at the end (whole run), the longest a request waited on "
              "the shard itself.", ""]
    lines += foreign_line([("perf run" if r is perf_run else f"round {i + 1}", r) for i, r in enumerate(all_runs)], cfg)
    for i, r in enumerate(all_runs):
        s = r.get("storm")
        if not s:
            continue
        name = "perf run" if r is perf_run else f"round {i + 1}"
        cut_s = int(s["cut_at_s"])
        lines.append(f"Retry advice seen by the clients per second, {name} (seconds since the load "
                     f"generator started; the cut was at {s['cut_at_s']:.2f} s; min–max ms, events): "
                     + ", ".join(f"{a['t_s']} s{' (cut)' if a['t_s'] == cut_s else ''}: "
                                 f"{a['min_ms']}–{a['max_ms']} ({a['count']})" for a in s["retry_advice"]))
        if r.get("healthz_phases"):
            lines.append(f"/healthz round trip from this script's poller, {name}, p50 / p99 / max ms: " + "; ".join(
                f"{k}: {fmt_health(v)}" for k, v in r["healthz_phases"].items()))
            lines.append(f"/healthz round trip (this script's poller) max per 0.5 s from the cut, {name}: " + ", ".join(
                f"{t:+.1f} s {v['rtt_max_ms']:.0f}" for t, v in r["healthz_by_half_s"] if v["n"]) + " ms")
        if r.get("cpu_around_cut"):
            lines.append(f"corecast CPU busy per 0.5 s from the cut, {name}: " + ", ".join(
                f"{t:+.1f} s {b * 100:.0f}%" for t, b in r["cpu_around_cut"]))
        if r.get("bench_cpu_around_cut"):
            lines.append(f"load generator CPU busy per 0.5 s from the cut, {name}: " + ", ".join(
                f"{t:+.1f} s {b * 100:.0f}%" for t, b in r["bench_cpu_around_cut"]))
        lines.append("")
    lines += ["corecast log (first round): ", "", "```"] + (all_runs[0].get("broker_log") or ["(empty)"]) + ["```", ""]
    if perf_run and perf_run.get("perf_report"):
        pr = perf_run["perf_report"]
        lines += [f"Profile of the storm window, the cut to +6 s (`{perf_run['perf']['cmd']}`). "
                  "By object (`perf report --no-children --sort dso`):", "", "```"] + pr["dso"] + ["```", "",
                  "Self time by symbol (`--no-children --sort dso,symbol`, ≥ 0.5%):", "", "```"] + pr["self"] + ["```", "",
                  "corecast's own symbols (`--no-children --dsos corecast --sort symbol`, ≥ 0.1% of all samples):", "", "```"] + pr["corecast"] + ["```", "",
                  "With children (`--children --sort symbol`):", "", "```"] + pr["children"] + ["```", ""]
    if perf_run and perf_run.get("perf_load_report"):
        lines += [f"The load CPU over the same window (`{perf_run['perf_load']['cmd']}`), self time "
                  "(`--no-children --sort comm,dso,symbol`, ≥ 0.5%):", "", "```"]
        lines += perf_run["perf_load_report"]["self"] + ["```", ""]
    return lines, all_runs


def perf_report(p, load=False):
    if not p:
        return None
    out = {}
    if load:
        reports = [("self", ["--no-children", "--sort", "comm,dso,symbol"], 25)]
    else:
        reports = [("dso", ["--no-children", "--sort", "dso"], 10),
                   ("self", ["--no-children", "--sort", "dso,symbol"], 30),
                   ("corecast", ["--no-children", "--dsos", "corecast", "--sort", "symbol",
                                 "--percent-limit", "0.1"], 20),
                   ("children", ["--children", "--sort", "symbol"], 40)]
    for key, args, n in reports:
        cmd = ["perf", "report", "-i", p["data"], "--stdio", "-g", "none", "--percent-limit", "0.5"] + args
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        rows = [re.sub(r"[\s-]+$", "", l) for l in r.stdout.splitlines()
                if l.strip() and not l.startswith("#")]
        head = [l for l in r.stdout.splitlines() if l.startswith("# Samples") or l.startswith("# Total")]
        out[key] = head + rows[:n]
    return out


# ---------------------------------------------------------------- main

def environment():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return [f"- git HEAD at the start: {sh(['git', '-C', ROOT, 'log', '-1', '--format=%h %ci'])}"
            + (" (uncommitted changes)" if sh(['git', '-C', ROOT, 'status', '--porcelain', '--untracked-files=no']) else ""),
            f"- {sh(['nats-server', '--version'])}; kernel {os.uname().release}; {os.cpu_count()} CPUs ({cpu})",
            f"- open-files limit {sh(['sh', '-c', 'ulimit -n'])}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                 epilog="See the module docstring for the scenarios.")
    ap.add_argument("--quick", action="store_true", help="one round, shorter runs, smaller counts")
    ap.add_argument("--repeat", type=int, help="rounds for scenarios 1, 2, 3a (default 3; --quick 1)")
    ap.add_argument("--gateway-repeat", type=int, default=1, help="rounds for 3b and 3c (default 1)")
    ap.add_argument("--only", default="fanout,latency,memory,broadcast,storm",
                    help="comma-separated scenarios (default: all)")
    ap.add_argument("--broker-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--no-perf", dest="perf", action="store_false",
                    help="no profiled storm run even when /healthz misses its target")
    ap.add_argument("--noisy", type=float, default=0.1,
                    help="run a run again (not in 3a) when other processes (and steal) took more "
                         "than this share of a CPU meanwhile (0: never; default 0.1)")
    ap.add_argument("--noisy-retries", type=int, default=3)
    ap.add_argument("--bin", default=BIN,
                    help="where corecast and corecast-bench are (default target/release); they "
                         "are copied to --logdir first, so a rebuild meanwhile does not change the run")
    ap.add_argument("--out", help="write the Markdown report here too")
    ap.add_argument("--json-out", help="write every run's JSON here")
    ap.add_argument("--logdir", help="broker logs, configs, perf data (default: a new temp dir)")
    cfg = ap.parse_args()
    q = cfg.quick
    cfg.repeat = cfg.repeat or (1 if q else 3)
    cfg.fanout_s = 2 if q else 4
    cfg.latency_s = 4 if q else 10
    cfg.idle_counts = [2000, 5000] if q else [5000, 15000]
    cfg.big_n = 15000
    cfg.broadcast_s = 15 if q else 60
    cfg.control_s = 6 if q else 15
    cfg.storm_at = 8 if q else 10
    cfg.storm_s = 25 if q else 30
    cfg.logdir = cfg.logdir or tempfile.mkdtemp(prefix="web_compare.")
    os.makedirs(cfg.logdir, exist_ok=True)
    only = set(cfg.only.split(","))
    # Copies of the binaries: other work on this machine may rebuild target/release meanwhile.
    global CORECAST, BENCH
    bins = []
    os.makedirs(os.path.join(cfg.logdir, "bin"), exist_ok=True)
    for name in ("corecast", "corecast-bench"):
        src = os.path.join(cfg.bin, name)
        if not os.path.exists(src):
            sys.exit(f"missing {src}: cargo build --release -p corecast-server -p corecast-bench")
        dst = os.path.join(cfg.logdir, "bin", name)
        shutil.copy2(src, dst)
        with open(dst, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.path.getmtime(src)))
        bins.append(f"- {rel(src)} (built {built}, sha256 {digest}…) copied to {dst}; the commands "
                    f"below run the copy")
    CORECAST, BENCH = (os.path.join(cfg.logdir, "bin", n) for n in ("corecast", "corecast-bench"))

    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)

    started = time.time()
    invocation = "scripts/web_compare.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [f"# WebSocket/SSE benchmark (`{invocation}`)", "",
             f"Broker pinned to CPU {cfg.broker_cpu}, load generator (corecast-bench) to CPU "
             f"{cfg.load_cpu}; loopback; {cfg.repeat} interleaved round(s) for 1, 2 and 3a, "
             f"{cfg.gateway_repeat} for 3b and 3c.", ""] + environment() + bins + [""]
    data = {}
    try:
        if only & {"fanout", "latency"}:
            cc = start_corecast(cfg, "fan-out/latency broker: corecast")
            nats = start_nats(cfg, "fan-out/latency broker: nats-server")
            try:
                if "fanout" in only:
                    l, data["fanout"] = fanout_section(cfg, cc, nats)
                    lines += l
                if "latency" in only:
                    l, data["latency"] = latency_section(cfg, cc, nats)
                    lines += l
                s = cc.stats()
                bad = {k: s[k] for k in ("slow_consumer_disconnects", "dropped", "http_errors",
                                         "protocol_errors", "ws_protocol_errors", "ws_request_errors",
                                         "rejected_connections", "accept_errors", "ws_ping_timeouts")}
                lines += [f"corecast counters after scenarios 1–2: " + ", ".join(f"{k} {v}" for k, v in bad.items()), ""]
            finally:
                cc.stop()
                nats.stop()
            for b in (cc, nats):
                log = read_log(b.log)
                lines += [f"{b.kind} log (scenarios 1–2):", "", "```"] + log[-15:] + ["```", ""]
        if "memory" in only:
            l, data["memory"] = memory_section(cfg)
            lines += l
        if "broadcast" in only:
            l, data["broadcast"] = broadcast_section(cfg)
            lines += l
        if "storm" in only:
            l, data["storm"] = storm_section(cfg)
            lines += l
    finally:
        stop_all()
        lines += ["## Commands, in order", "", "```"] + [f"# {w}\n{c}" for w, c in COMMANDS] + ["```", "",
                  f"Total time {time.time() - started:.0f} s. Logs and configs: {cfg.logdir}"]
        text = "\n".join(lines) + "\n"
        print(text)
        if cfg.out:
            with open(cfg.out, "w") as f:
                f.write(text)
        if cfg.json_out:
            with open(cfg.json_out, "w") as f:
                json.dump({"commands": COMMANDS, "data": data}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
