#!/usr/bin/env python3
"""drover at scale, on the engine simulator (drover-sim): thousands of containers over
dozens of simulated engines. For each size and engine count: cold start against the
simulator's own floor, the reaction from a crash's `die` to drover's next call for that
container, a burst of 20% crashed at once, and drover's footprint and API traffic idle.

Run it through `bench/run.sh --only scale` (or bench/scale.sh), which builds the release
binaries first. Rewrites the scale section of docs/benchmarks.md.
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "drover-test/busybox:latest"
BEGIN = "<!-- scale:begin (bench/scale.py rewrites this section) -->"
END = "<!-- scale:end -->"

# The simulated engines: each serves 8 calls at once; a create takes 5 ms, a start 10 ms,
# any other call 1 ms, and a container list 2 us more per container the engine holds.
CAPACITY = 8
LATENCY = {"create": 0.005, "start": 0.010, "*": 0.001}
LIST_COST = 0.000002
SERVICES = 10
# drover's --backoff-reset here: a replica that ran this long is not crash-looping.
BACKOFF_RESET_S = 2


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Sim:
    def __init__(self, binary, engines, workdir):
        self.dir = os.path.join(workdir, "sim")
        latency = ",".join(f"{k}={int(v * 1e6)}us" for k, v in LATENCY.items())
        self.proc = subprocess.Popen(
            [binary, "--engines", str(engines), "--dir", self.dir, "--capacity", str(CAPACITY),
             "--latency", latency, "--list-cost", f"{int(LIST_COST * 1e9)}ns", "--image", IMAGE],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = json.loads(self.proc.stdout.readline())
        self.sockets = ready["engines"]
        self.control_path = ready["control"]

    def call(self, method, path):
        c = UnixHTTP(self.control_path)
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            c.close()

    def stats(self):
        return self.call("GET", "/stats")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def floor_seconds(n, engines):
    """The simulator's own capacity: each engine runs its share of create+start calls
    CAPACITY at a time, each taking the simulated latency."""
    per_engine = math.ceil(n / engines)
    return math.ceil(per_engine / CAPACITY) * (LATENCY["create"] + LATENCY["start"])


def compose(project, n, sockets):
    per = [n // SERVICES + (1 if i < n % SERVICES else 0) for i in range(SERVICES)]
    services = "".join(
        f"  s{i}:\n    image: {IMAGE}\n    stop_signal: SIGKILL\n    deploy:\n      replicas: {k}\n"
        for i, k in enumerate(per))
    nodes = "".join(f"    - name: n{i}\n      host: unix://{s}\n" for i, s in enumerate(sockets))
    return f"name: {project}\nservices:\n{services}x-drover:\n  nodes:\n{nodes}"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def wait_for(what, cond, timeout, every=0.1):
    start = time.time()
    while time.time() - start < timeout:
        v = cond()
        if v:
            return time.time() - start
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def one(args, n, engines):
    """One size on one engine count: every measurement, with drover started once."""
    work = tempfile.mkdtemp(prefix=f"drover-scale-{n}-{engines}-")
    sim = Sim(args.sim, engines, work)
    res = {"containers": n, "engines": engines, "floor_s": floor_seconds(n, engines)}
    proc = None
    try:
        app = os.path.join(work, "app")
        os.makedirs(app)
        with open(os.path.join(app, "compose.yml"), "w") as f:
            f.write(compose(f"scale{n}x{engines}", n, sim.sockets))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DROVER_"))}
        log(f"{n} containers on {engines} engines: cold start (floor {res['floor_s']:.2f} s)")
        t0 = time.time()
        proc = subprocess.Popen(
            [args.drover, "run", "--listen", "off", "--log-format", "json", "--log-level", "warn",
             # A replica that ran 2 s is not crash-looping: the crashes below time the
             # reaction, not the backoff.
             "--backoff-reset", f"{BACKOFF_RESET_S}s"],
            cwd=app, env=env, stdout=open(os.path.join(work, "drover.log"), "w"),
            stderr=subprocess.STDOUT)
        res["cold_s"] = wait_for("every replica running",
                                 lambda: sim.stats()["running_now"] >= n, args.timeout, 0.05)
        res["cold_started_at"] = t0
        # Let the passes that follow a cold start finish (the events of every create and
        # start are still being read) before measuring idle.
        res["settle_s"] = settle(sim, args.timeout)
        res.update(idle(sim, proc, args.idle))
        res.update(reactions(sim, n, args.reactions))
        res.update(burst(sim, n, args.timeout))
        res["rss_peak_mib"] = status_kib(proc.pid, "VmHWM") / 1024
        if proc.poll() is not None:
            raise RuntimeError("drover exited during the run")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        sim.stop()
    return res


def settle(sim, timeout):
    """Wait until 3 s pass with no call on containers (pings, lists and the lease's
    renewals go on)."""
    def busy(st):
        return sum(v for k, v in st["requests"].items()
                   if k in ("inspect", "create", "start", "stop", "restart", "kill", "remove", "rename"))
    start, quiet = time.time(), 0
    prev = busy(sim.stats())
    while time.time() - start < timeout and quiet < 3:
        time.sleep(1)
        now = busy(sim.stats())
        quiet = quiet + 1 if now == prev else 0
        prev = now
    return time.time() - start


def idle(sim, proc, seconds):
    log(f"  idle {seconds} s")
    s0, c0, t0 = sim.stats(), cpu_seconds(proc.pid), time.time()
    time.sleep(seconds)
    s1, c1, t1 = sim.stats(), cpu_seconds(proc.pid), time.time()
    minutes = (t1 - t0) / 60
    kinds = {k: round((s1["requests"][k] - s0["requests"][k]) / minutes, 1)
             for k in s1["requests"] if s1["requests"][k] != s0["requests"][k]}
    total = (s1["requests_total"] - s0["requests_total"]) / minutes
    return {"idle_cpu_pct": 100 * (c1 - c0) / (t1 - t0), "idle_req_per_min": total,
            "idle_by_kind": kinds, "rss_mib": status_kib(proc.pid, "VmRSS") / 1024}


def reactions(sim, n, count):
    """Crash one running container at a time; the simulator times its die to drover's
    next create or start of it. None crashes twice within drover's backoff reset (2 s,
    given below): a replica crashing again that soon is held back by the crash backoff,
    which is not the reaction."""
    log(f"  reaction, {count} single crashes")
    sim.call("POST", "/reset")
    for i in range(count):
        sim.call("POST", f"/crash?count=1&rest_ms={int(BACKOFF_RESET_S * 1000) + 500}")
        def restarted(st):
            return len(st["reactions_ms"]) > i and st["running_now"] >= n
        wait_for("the crashed replica restarted", lambda: restarted(sim.stats()), 60, 0.02)
        time.sleep(0.2)
    xs = sim.stats()["reactions_ms"]
    _, lo, hi = median_ci(xs)
    return {"reaction_ms": xs, "reaction_p50_ms": pct(xs, 0.5), "reaction_p50_ci": [lo, hi],
            "reaction_p99_ms": pct(xs, 0.99)}


def burst(sim, n, timeout):
    log("  burst: 20% crashed at once")
    sim.call("POST", "/reset")
    t0 = time.time()
    crashed = sim.call("POST", "/crash?fraction=0.2")["crashed"]
    took = wait_for("every crashed replica restarted",
                    lambda: sim.stats()["running_now"] >= n, timeout, 0.05)
    s = sim.stats()
    return {"burst_crashed": crashed, "burst_s": took, "burst_max_running": s["max_running"],
            "burst_reaction_p50_ms": pct(s["reactions_ms"], 0.5),
            "burst_reaction_p99_ms": pct(s["reactions_ms"], 0.99),
            "burst_above_target": s["max_running"] > n, "burst_t0": t0}


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


def parse_ts(s):
    """RFC 3339 with up to nanoseconds and Z, to unix time."""
    from datetime import datetime, timezone
    head, _, frac = s.rstrip("Z").partition(".")
    t = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def median_ci(xs, resamples=2000, seed=17):
    """The median and its 95% bootstrap interval (a fixed seed: the same data, the same
    interval)."""
    if not xs:
        return None, None, None
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    return statistics.median(xs), meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


class ExitProbe(threading.Thread):
    """The engine's own floor for learning of an exit: on each `die` of the given projects,
    one inspect at once over the engine's socket; the time from the `die` to its answer
    (the engine holds a dying container's inspect until it has cleaned the container up,
    for any client). drover's part of a reaction is what it adds on top of this."""

    def __init__(self, projects):
        super().__init__(daemon=True)
        self.floors = {}
        self.dies = {}
        # The engine ANDs label filters: filter on the key, pick the projects here.
        self.projects = set(projects)
        self.proc = subprocess.Popen(
            ["docker", "events", "--format", '{{.ID}} {{.TimeNano}} {{index .Actor.Attributes "drover.project"}}',
             "--filter", "event=die", "--filter", "label=drover.project"],
            stdout=subprocess.PIPE, text=True)

    def run(self):
        for line in self.proc.stdout:
            try:
                cid, nano, project = line.split()
            except ValueError:
                continue
            if project not in self.projects:
                continue
            # The engine keeps only its last 256 events for `--since`: the dies are taken
            # here, as they happen.
            self.dies.setdefault(project, {}).setdefault(cid[:12], []).append(int(nano) / 1e9)
            conn = UnixHTTP(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")[len("unix://"):])
            try:
                conn.request("GET", f"/containers/{cid}/json")
                conn.getresponse().read()
                self.floors.setdefault(cid[:12], []).append((time.time() - int(nano) / 1e9) * 1000)
            except OSError:
                pass
            finally:
                conn.close()

    def stop(self):
        self.proc.terminate()


def real(args, sizes, kills=30):
    """The same reaction on the real local engine, one drover per size, all running at
    once: each round kills one replica of each size in turn with `docker kill` (so both
    sizes see the same machine), from the engine's `die` event to the moment drover's start
    call for it began (its log gives the call's end and duration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    runs = []
    try:
        for n in sizes:
            project = f"scale-real-{n}-{os.getpid()}"
            work = tempfile.mkdtemp(prefix=f"drover-scale-real-{n}-")
            with open(os.path.join(work, "compose.yml"), "w") as f:
                f.write(f"name: {project}\nservices:\n  web:\n    image: {IMAGE}\n    stop_signal: SIGKILL\n"
                        f"    deploy:\n      replicas: {n}\n")
            logpath = os.path.join(work, "drover.log")
            log(f"real engine, {n} replicas: cold start")
            proc = subprocess.Popen(
                [args.drover, "run", "--listen", "off", "--log-format", "json", "--backoff-reset", "2s",
                 "--lease-ttl", "0s"], cwd=work, env=env, stdout=open(logpath, "w"), stderr=subprocess.STDOUT)
            run = {"n": n, "project": project, "log": logpath, "proc": proc,
                   "label": f"label=drover.project={project}"}
            runs.append(run)
            run["cold_s"] = wait_for("every replica running", lambda: len(running(run)) >= n, 900, 0.5)
        time.sleep(5)
        probe = ExitProbe([r["project"] for r in runs])
        probe.start()
        time.sleep(1)
        log(f"real engine: {kills} rounds of one kill per size ({', '.join(str(r['n']) for r in runs)})")
        for i in range(kills):
            for run in runs:
                victim = running(run)[(i * 7919) % run["n"]]
                docker("kill", victim)
                wait_for("the killed replica restarted", lambda: len(running(run)) >= run["n"], 120, 0.05)
                time.sleep(0.5)
        time.sleep(1)
        probe.stop()
        out = []
        for run in runs:
            pairs = reactions_in(run, probe.dies.get(run["project"], {}))
            xs = [r for _, r in pairs]
            floors, own = [], []
            for c, r in pairs:
                if probe.floors.get(c):
                    f = probe.floors[c].pop(0)
                    floors.append(f)
                    own.append(r - f)
            p50, lo, hi = median_ci(xs)
            f50, flo, fhi = median_ci(floors)
            o50, olo, ohi = median_ci(own)
            out.append({"replicas": run["n"], "cold_s": run["cold_s"], "reaction_ms": xs,
                        "reaction_p50_ms": p50, "reaction_p50_ci": [lo, hi],
                        "reaction_p99_ms": pct(xs, 0.99), "kills": kills,
                        "floor_ms": floors, "floor_p50_ms": f50, "floor_p50_ci": [flo, fhi],
                        "own_ms": own, "own_p50_ms": o50, "own_p50_ci": [olo, ohi]})
        return out
    finally:
        for run in runs:
            run["proc"].send_signal(signal.SIGTERM)
            try:
                run["proc"].wait(15)
            except subprocess.TimeoutExpired:
                run["proc"].kill()
            ids = docker("ps", "-aq", "--filter", run["label"], check=False).split()
            for i in range(0, len(ids), 50):
                docker("rm", "-f", *ids[i:i + 50], check=False)
            docker("network", "rm", f"{run['project']}_default", check=False)


def running(run):
    return docker("ps", "-q", "--filter", run["label"], "--filter", "status=running").split()


def reactions_in(run, dies):
    """From each `die` of the run's project (`dies`: container to die times) to the start
    drover logged for that container next (a container killed twice counts twice):
    (container, milliseconds)."""
    dies = {c: list(ts) for c, ts in dies.items()}
    xs = []
    for line in open(run["log"]):
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("action") == "start" and "duration_ms" in j:
            began = parse_ts(j["timestamp"]) - j["duration_ms"] / 1000
            waiting = dies.get(j.get("container"), [])
            if waiting and began >= waiting[0]:
                xs.append((j["container"], (began - waiting.pop(0)) * 1000))
    return xs


def real_ci(r, what="reaction"):
    lo, hi = r.get(f"{what}_p50_ci") or (None, None)
    return f"{fmt(lo, '.1f')}–{fmt(hi, '.1f')} ms"


def fmt(v, spec=".0f", none="—"):
    return none if v is None else format(v, spec)


def merge_rounds(runs):
    """One result per size from its rounds: the reactions pooled (median, interval and
    p99 of them all) with each round's median kept; the other measures are the median of
    the rounds (the most running at once, the most of them; RSS peak, the highest)."""
    by = {}
    for r in runs:
        by.setdefault((r["containers"], r["engines"]), []).append(r)
    merged = []
    for rs in by.values():
        ok = [r for r in rs if "error" not in r]
        if len(rs) == 1 or not ok:
            merged.append(rs[-1])  # one round, or every round failed: the last says why
            continue
        m = dict(ok[0])
        xs = [x for r in ok for x in r["reaction_ms"]]
        _, lo, hi = median_ci(xs)
        m.update({"reaction_ms": xs, "reaction_p50_ms": pct(xs, 0.5), "reaction_p50_ci": [lo, hi],
                  "reaction_p99_ms": pct(xs, 0.99),
                  "round_p50_ms": [r["reaction_p50_ms"] for r in ok],
                  "rounds_failed": len(rs) - len(ok)})
        for k in ("cold_s", "settle_s", "burst_s", "rss_mib", "idle_cpu_pct", "idle_req_per_min"):
            m[k] = statistics.median(r[k] for r in ok)
        m["rss_peak_mib"] = max(r["rss_peak_mib"] for r in ok)
        m["burst_max_running"] = max(r["burst_max_running"] for r in ok)
        m["burst_above_target"] = any(r["burst_above_target"] for r in ok)
        merged.append(m)
    return merged


def by_round(r):
    """Each round's reaction median, lowest to highest."""
    meds = sorted(r.get("round_p50_ms") or [])
    failed = f", {r['rounds_failed']} failed" if r.get("rounds_failed") else ""
    return (", ".join(f"{x:.1f}" for x in meds) + " ms" + failed) if meds else ""


def table(results):
    head = ["containers", "engines", "cold start", "floor", "vs floor", "reaction p50 (95%) / p99",
            "burst (20%)", "max running", "RSS now / peak", "idle CPU", "idle API req/min"]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([str(r["containers"]), str(r["engines"]), f"failed: {r['error']}"]
                        + [""] * (len(head) - 3))
            continue
        rows.append([
            f"{r['containers']:,}", str(r["engines"]),
            f"{r['cold_s']:.2f} s", f"{r['floor_s']:.2f} s", f"{r['cold_s'] / r['floor_s']:.1f}x",
            f"{fmt(r['reaction_p50_ms'], '.1f')} ({real_ci(r)}) / {fmt(r['reaction_p99_ms'], '.1f')} ms",
            f"{r['burst_s']:.2f} s ({r['burst_crashed']})",
            f"{r['burst_max_running']:,}{' ABOVE' if r['burst_above_target'] else ''}",
            f"{r['rss_mib']:.1f} / {r['rss_peak_mib']:.1f} MiB",
            f"{r['idle_cpu_pct']:.2f}%",
            f"{r['idle_req_per_min']:.0f}",
        ])
    if any(r.get("round_p50_ms") for r in results):
        head.insert(6, "p50 by round")
        for r, row in zip(results, rows):
            row.insert(6, by_round(r))
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    text = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    text += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(text), "\n".join(md)


LEAVES_OUT = """What the simulator leaves out, so that nobody mistakes its numbers for a real engine's:
no processes, images, filesystems, cgroups or network namespaces (a start is a state change
and a timer, not a fork and exec); no healthchecks (no `(healthy)` in a list, no
`health_status` events), no restart policies, no logs, exec, attach, stats or wait; pulls
succeed only for the images it was given and never reach a registry; latency is a fixed
delay per kind of call plus a list cost per container, with no variance and no slowdown
under load other than its per-engine capacity; its event log and its answers are built by
one process sharing the machine's CPUs with drover, so at the largest sizes the simulator's
own work is part of what is measured. It answers the calls drover makes with the shapes,
status codes and event sequences of Engine 20.10 (tests/simulator.rs checks them against the
local engine), which is all it claims."""


def compare(before, after):
    """Rows of before -> after for the sizes both runs measured."""
    key = lambda r: (r["containers"], r["engines"])  # noqa: E731
    old = {key(r): r for r in before}
    head = ["containers", "engines", "reaction p50 before → after", "p99 before → after",
            "cold start before → after", "burst before → after", "RSS before → after",
            "idle CPU before → after", "idle req/min before → after"]
    rows = []

    def cell(b, a, f):
        def one(r):
            return "failed" if "error" in r else f(r)
        return f"{one(b)} → {one(a)}"
    for r in after:
        b = old.get(key(r))
        if b is None:
            continue
        rows.append([f"{r['containers']:,}", str(r["engines"]),
                     cell(b, r, lambda x: f"{fmt(x['reaction_p50_ms'], '.0f')} ms"),
                     cell(b, r, lambda x: f"{fmt(x['reaction_p99_ms'], '.0f')} ms"),
                     cell(b, r, lambda x: f"{x['cold_s']:.1f} s"),
                     cell(b, r, lambda x: f"{x['burst_s']:.1f} s"),
                     cell(b, r, lambda x: f"{x['rss_mib']:.0f} MiB"),
                     cell(b, r, lambda x: f"{x['idle_cpu_pct']:.2f}%"),
                     cell(b, r, lambda x: f"{x['idle_req_per_min']:.0f}")])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(md)


def section(results, meta, before=None):
    _, md = table(results)
    kinds = []
    for r in results:
        if "idle_by_kind" in r:
            top = ", ".join(f"{k} {v:g}" for k, v in sorted(r["idle_by_kind"].items(), key=lambda kv: -kv[1]))
            kinds.append(f"- {r['containers']:,} on {r['engines']}: {top}")
    lat = ", ".join(f"{k} {v * 1000:g} ms" for k, v in LATENCY.items())
    return "\n".join([
        BEGIN,
        f"## Scale on the engine simulator ({meta['mode']}, {meta['when']}, {meta['minutes']:.0f} min)",
        "",
        "`./bench/run.sh --only scale [--quick]` (or `bench/scale.sh`): drover (release build,",
        f"{meta['drover']}) against `drover-sim`, {SERVICES} services sharing the replicas, over",
        f"simulated engines that each serve {CAPACITY} calls at once ({lat}; a container list",
        f"{LIST_COST * 1e6:g} us more per container the engine holds). Load average at the start:",
        f"{meta['load']}. Columns: cold start from launch to every replica running, against the",
        "simulator's own floor (each engine's share of create+start calls at its capacity); the",
        f"reaction is the simulator's time from a crash's `die` to drover's start call for that",
        f"container, over {meta['reactions']} single crashes{rounds_text(meta)}; the burst crashes 20% at once and",
        "times until all run again, with the most running at any moment (never above the",
        f"target); idle is {meta['idle']} s with nothing happening.",
        "",
        md,
        "",
        "Idle requests per minute, by kind:",
        "",
        *kinds,
        "",
        *(["The same reaction on the real local engine (Engine 20.10), one drover per size, "
           "running side by side; each round kills one replica of each size in turn with "
           "`docker kill`: from the engine's `die` event to the moment drover's start call began "
           "(its log gives the call's end and duration). The engine floor is the time from the "
           "same `die` to the engine's answer to an inspect sent at once by a probe beside drover "
           "(the engine answers only once it has cleaned the container up, for any client); "
           "drover's part is each reaction less its floor. Each median has its 95% bootstrap "
           "interval: two sizes are within noise when their intervals overlap."
           + (f" (Measured {meta['real_when']}, in a separate run: `--sizes none --real "
              f"{','.join(str(r['replicas']) for r in meta['real'])}`.)" if meta.get("real_when") else ""),
           "",
           "| replicas | cold start | reaction p50 (95%) / p99 | engine floor p50 (95%) | drover's part p50 (95%) | kills |",
           "|---|---|---|---|---|---|",
           *[f"| {r['replicas']} | {r['cold_s']:.1f} s | {fmt(r['reaction_p50_ms'], '.1f')} "
             f"({real_ci(r)}) / {fmt(r['reaction_p99_ms'], '.1f')} ms | {fmt(r.get('floor_p50_ms'), '.1f')} "
             f"({real_ci(r, 'floor')}) | {fmt(r.get('own_p50_ms'), '.1f')} ({real_ci(r, 'own')}) | "
             f"{len(r['reaction_ms'])} of {r['kills']} |"
             for r in meta.get("real", [])], ""] if meta.get("real") else []),
        *([f"Before and after (the same sizes, before: {before['meta']['drover']}, measured "
           f"{before['meta']['when']} with the same harness):", "",
           compare(before["results"], results), ""] if before else []),
        LEAVES_OUT,
        "",
        *notes(),
        END,
    ])


def rounds_text(meta):
    """How the rounds of a run were taken, for the section's introduction."""
    k = meta.get("rounds", 1)
    if k <= 1:
        return ""
    return (f" in each of {k} rounds that take the sizes in turn (the reactions of all rounds are"
            " pooled; `p50 by round` is each round's own median, lowest first, and its spread"
            " is the noise between runs of one size; the other columns are the rounds' median)")


def notes():
    """The hand-kept analysis of the scale run (bench/scale-notes.md), if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale-notes.md")
    if not os.path.exists(path):
        return []
    return [open(path).read().strip(), ""]


def write_doc(path, text):
    old = open(path).read() if os.path.exists(path) else ""
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, old, flags=re.S)
    else:
        # After the introduction: before the first dated section.
        at = old.find("\n## ")
        new = old[:at + 1] + text + "\n\n" + old[at + 1:] if at >= 0 else old + "\n" + text + "\n"
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k containers over 1 and 10 engines, shorter idle")
    ap.add_argument("--sizes", help="containers, comma-separated (default 100,1000,10000,50000; none: only --real)")
    ap.add_argument("--engines", help="engine counts, comma-separated (default 1,10,50)")
    ap.add_argument("--only", help="ignored (bench/run.sh passes it through)")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")))
    ap.add_argument("--drover", help="drover binary (default: the release build)")
    ap.add_argument("--sim", help="drover-sim binary (default: the release build)")
    ap.add_argument("--idle", type=int, help="idle seconds (default 60, quick 30)")
    ap.add_argument("--reactions", type=int, default=30, help="single crashes timed")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every size this many times, interleaved; reactions are pooled and "
                         "each round's median is shown")
    ap.add_argument("--timeout", type=float, default=600, help="longest wait for a convergence")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "benchmarks.md"))
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the section from saved results")
    ap.add_argument("--real", help="also measure the reaction on the real local engine at these "
                    "replica counts, comma-separated (e.g. 20,500); needs the engine and its test image")
    ap.add_argument("--kills", type=int, default=30, help="rounds of kills on the real engine (one per size each)")
    ap.add_argument("--real-from", metavar="JSON", help="with --render: the real engine's rows from "
                    "this separate run's saved results")
    ap.add_argument("--before", metavar="JSON", help="saved results of an earlier build, compared in the section")
    args = ap.parse_args()
    before = None
    if args.before:
        with open(args.before) as f:
            before = json.load(f)
    if args.render:
        with open(args.render) as f:
            saved = json.load(f)
        if args.real_from:
            # The real engine's rows from a separate run (`--sizes none --real ...`).
            with open(args.real_from) as f:
                other = json.load(f)["meta"]
            saved["meta"]["real"] = other["real"]
            saved["meta"]["real_when"] = other["when"]
        print(table(saved["results"])[0])
        write_doc(args.out, section(saved["results"], saved["meta"], before))
        return
    args.drover = args.drover or os.path.join(args.target_dir, "release", "drover")
    args.sim = args.sim or os.path.join(args.target_dir, "release", "drover-sim")
    args.idle = args.idle or (30 if args.quick else 60)
    sizes = [int(x) for x in (args.sizes or ("100,1000,10000" if args.quick else "100,1000,10000,50000")).split(",") if x and x != "none"]
    counts = [int(x) for x in (args.engines or ("1,10" if args.quick else "1,10,50")).split(",")]
    started = time.time()
    load = "%.2f %.2f %.2f" % os.getloadavg()
    runs = []
    # Rounds interleave the sizes, so that a slower minute of the machine falls on each
    # size alike; the spread of one size's medians over the rounds is the run's noise.
    for k in range(args.rounds):
        if args.rounds > 1:
            log(f"round {k + 1} of {args.rounds}")
        for n in sizes:
            for e in counts:
                try:
                    runs.append(one(args, n, e))
                except Exception as ex:  # a failed size is reported, the others still run
                    log(f"  failed: {ex}")
                    runs.append({"containers": n, "engines": e, "error": str(ex)})
                text, _ = table(runs[-1:])
                print(text, flush=True)
    results = merge_rounds(runs)
    real_runs = []
    if args.real:
        try:
            real_runs = real(args, [int(x) for x in args.real.split(",")], args.kills)
        except Exception as ex:
            log(f"  failed: {ex}")
        for r in real_runs:
            print(f"real engine, {r['replicas']} replicas: reaction p50 {fmt(r['reaction_p50_ms'], '.1f')} ms "
                  f"({real_ci(r)}), p99 {fmt(r['reaction_p99_ms'], '.1f')} ms; engine floor p50 "
                  f"{fmt(r['floor_p50_ms'], '.1f')} ms ({real_ci(r, 'floor')}); drover's part p50 "
                  f"{fmt(r['own_p50_ms'], '.1f')} ms ({real_ci(r, 'own')})", flush=True)
    text, _ = table(results)
    print(text)
    version = subprocess.run([args.drover, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    meta = {"mode": "quick" if args.quick else "full",
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "minutes": (time.time() - started) / 60, "load": load,
            "drover": f"{version} {commit}".strip(), "reactions": args.reactions, "idle": args.idle,
            "rounds": args.rounds,
            "real": real_runs}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "rounds": runs if args.rounds > 1 else []},
                      f, indent=1)
    if not args.no_doc:
        write_doc(args.out, section(results, meta, before))
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
