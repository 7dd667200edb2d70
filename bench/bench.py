#!/usr/bin/env python3
"""drover beside the raw engine floor, Docker Compose v2, Swarm mode and the engine's
restart policy, on one engine, in one run. Prints a table and writes docs/benchmarks.md.

Run it through bench/run.sh, which installs and builds the prerequisites first.
"""

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import ApiError, Engine, Events  # noqa: E402
import report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOCK = "/var/run/docker.sock"
IMAGE = "drover-test/busybox:latest"
COMPOSE = f"""services:
  web:
    image: {IMAGE}
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
"""

# Runs per measurement: (full, quick).
PLAN = {
    "cold50": (5, 2),
    "cold200": (3, 1),
    "swarm_cold200": (2, 1),
    "floor_levels": ((4, 8, 16), (4, 8, 16)),
    "floor_level_runs": (2, 1),
    "recovery": (10, 4),        # drover and the engine's policy, per kind
    "recovery_never": (2, 1),   # a peer expected never to recover: fewer trials
    "recovery_swarm": (5, 3),
    "burst": (3, 2),
    "idle_seconds": (60, 30),  # a minute: two resyncs and one event-stream watchdog cycle
    "footprint_n": (500, 500),
}


if os.environ.get("BENCH_SMOKE"):
    PLAN.update({"cold50": (1, 1), "cold200": (1, 1), "floor_levels": ((8,), (8,)),
                 "floor_level_runs": (1, 1), "recovery": (2, 2), "recovery_never": (1, 1),
                 "recovery_swarm": (1, 1), "swarm_cold200": (1, 1), "burst": (2, 2), "idle_seconds": (20, 20),
                 "footprint_n": (60, 60)})


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stats(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    rank = max(1, math.ceil(0.95 * len(xs)))
    return {"median": statistics.median(xs), "p95": xs[rank - 1], "n": len(xs), "runs": xs}


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.engine = Engine(SOCK)
        self.events = Events(SOCK)
        self.events.alive = self.check_drover
        self.work = tempfile.mkdtemp(prefix="drover-bench-")
        self.compose = os.path.join(self.work, "compose.yml")
        with open(self.compose, "w") as f:
            f.write(COMPOSE)
        self.drover = os.path.join(args.target_dir, "release", "drover")
        self.run_id = uuid.uuid4().hex[:6]
        self.seq = 0
        self.results = {"mode": "quick" if self.quick else "full", "load": []}
        self.swarm_ours = False
        self.listen_off = self._listen_off()

    def n(self, key):
        return PLAN[key][1 if self.quick else 0]

    def project(self, what):
        self.seq += 1
        return f"bench-{self.run_id}-{what}-{self.seq}"

    def _listen_off(self):
        try:
            out = subprocess.run([self.drover, "run", "--help"], capture_output=True, text=True).stdout
        except OSError:
            return []
        return ["--listen", "off"] if "--listen" in out else []

    def note_load(self, phase):
        self.results["load"].append({"phase": phase, "load": loadavg(), "time": time.time()})
        log(f"{phase}: load average {loadavg()}")

    # ------------------------------------------------------------------ cleanup
    @staticmethod
    def ours(labels):
        # `drover.lease`: the lease container a drover leaves beside a project (created,
        # never started, without the project's label).
        for k in ("drover.project", "drover.lease", "com.docker.compose.project",
                  "com.docker.swarm.service.name", "bench.project"):
            if labels.get(k, "").startswith("bench-"):
                return True
        return False

    def sweep(self):
        """Remove everything this benchmark may have left: bench-* projects of any run."""
        if self.swarm_ours or self.engine.swarm_state() == "active":
            for name in self.swarm_services():
                subprocess.run(["docker", "service", "rm", name], capture_output=True)
        self.engine.remove_where(self.ours)
        for net in self.engine.call("GET", "/networks"):
            if net.get("Name", "").startswith("bench-"):
                self.engine.call("DELETE", f"/networks/{net['Id']}", ok=(204, 404, 409, 403))

    def swarm_services(self):
        out = subprocess.run(["docker", "service", "ls", "--format", "{{.Name}}"],
                             capture_output=True, text=True).stdout.split()
        return [s for s in out if s.startswith("bench-")]

    # ------------------------------------------------------------------ drover
    def start_drover(self, project, scale, host=None, extra=()):
        logpath = os.path.join(self.work, f"{project}.log")
        args = [self.drover] + (["-H", host] if host else []) + [
            "run", "-f", self.compose, "-p", project, "--scale", f"web={scale}",
            "--log-format", "json", *self.listen_off, *extra]
        out = open(logpath, "w")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.work)
        proc.logpath = logpath
        proc.logfile = out
        self.current = proc
        return proc

    def check_drover(self):
        proc = getattr(self, "current", None)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"drover exited with status {proc.returncode}: "
                               + open(proc.logpath).read()[-400:])

    def stop_drover(self, proc):
        self.current = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.logfile.close()

    @staticmethod
    def drover_log(proc):
        recs = []
        with open(proc.logpath) as f:
            for line in f:
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass
        return recs

    def remove_project(self, label, value):
        """Remove a project's containers, then its networks (named `<project>_<key>`)."""
        self.engine.remove_where(lambda l: l.get(label) == value, parallel=2)
        for net in self.engine.call("GET", "/networks"):
            if net.get("Name", "").startswith(value + "_"):
                self.remove_network(net)

    def remove_network(self, net):
        # Endpoints of just-removed containers can linger a moment: retry before giving up.
        for attempt in range(10):
            try:
                self.engine.call("DELETE", f"/networks/{net['Id']}", ok=(204, 404))
                return
            except ApiError as e:
                if attempt == 9:
                    self.results.setdefault("leftovers", []).append(f"network {net['Name']}: {e}")
                    log(f"could not remove network {net['Name']}: {e}")
                    return
                time.sleep(1)

    # ------------------------------------------------------------------ cold start
    def cold_drover(self, n):
        p = self.project(f"cold{n}")
        m = self.events.mark()
        t0 = time.time()
        proc = self.start_drover(p, n)
        try:
            done = self.events.wait_started(m, lambda e: e.attrs.get("drover.project") == p, n, 120 + 2 * n)
            if proc.poll() is not None:
                raise RuntimeError(f"drover exited with {proc.returncode}; see {proc.logpath}")
        finally:
            self.stop_drover(proc)
            self.remove_project("drover.project", p)
        if done is None:
            raise RuntimeError(f"drover did not start {n} containers; see {proc.logpath}")
        recs = self.drover_log(proc)
        creates = [r.get("duration_ms") for r in recs if r.get("action") == "create" and "duration_ms" in r]
        first_create = min((parse_ts(r["timestamp"]) - r.get("duration_ms", 0) / 1000
                            for r in recs if r.get("action") == "create" and "timestamp" in r), default=None)
        return done.t - t0, {"create_ms": creates,
                             "to_first_create": (first_create - t0) if first_create else None}

    def cold_floor(self, n, parallel):
        p = self.project(f"floor{n}")
        m = self.events.mark()
        ops = []

        net = f"{p}_default"

        def one(i):
            # The same container drover and compose make: on the project's own bridge
            # network, with the service name as an alias.
            a = time.time()
            r = self.engine.call("POST", f"/containers/create?name={p}-web-{i}", {
                "Image": IMAGE, "Cmd": ["sleep", "86400"], "Labels": {"bench.project": p},
                "StopSignal": "SIGKILL",
                "HostConfig": {"NetworkMode": net, "RestartPolicy": {"Name": "no"}},
                "NetworkingConfig": {"EndpointsConfig": {net: {"Aliases": ["web"]}}}})
            b = time.time()
            self.engine.call("POST", f"/containers/{r['Id']}/start", ok=(204, 304))
            ops.append(((b - a) * 1000, (time.time() - b) * 1000))

        t0 = time.time()
        try:
            self.engine.call("POST", "/networks/create", {
                "Name": net, "CheckDuplicate": True, "Labels": {"bench.project": p}})
            with ThreadPoolExecutor(parallel) as ex:
                list(ex.map(one, range(1, n + 1)))
            done = self.events.wait_started(m, lambda e: e.attrs.get("bench.project") == p, n, 60)
        finally:
            self.remove_project("bench.project", p)
        if done is None:
            raise RuntimeError("floor: start events missing")
        return done.t - t0, {"create_ms": [c for c, _ in ops], "start_ms": [s for _, s in ops]}

    def cold_compose(self, n):
        p = self.project(f"compose{n}")
        m = self.events.mark()
        t0 = time.time()
        try:
            r = subprocess.run(["docker", "compose", "-p", p, "-f", self.compose, "up", "-d",
                                "--scale", f"web={n}"], capture_output=True, text=True, cwd=self.work)
            if r.returncode != 0:
                raise RuntimeError(f"docker compose failed: {r.stderr[-500:]}")
            done = self.events.wait_started(
                m, lambda e: e.attrs.get("com.docker.compose.project") == p, n, 60)
        finally:
            self.remove_project("com.docker.compose.project", p)
        if done is None:
            raise RuntimeError("compose: start events missing")
        return done.t - t0, {"command_s": None}

    def swarm_service(self, p, n):
        r = subprocess.run(["docker", "service", "create", "--detach", "--no-resolve-image",
                            "--name", p, "--replicas", str(n), "--stop-signal", "SIGKILL",
                            IMAGE, "sleep", "86400"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"docker service create failed: {r.stderr[-500:]}")

    def swarm_rm(self, p):
        subprocess.run(["docker", "service", "rm", p], capture_output=True)
        deadline = time.time() + 120
        label = "com.docker.swarm.service.name"
        while time.time() < deadline:
            if not [c for c in self.engine.containers() if (c.get("Labels") or {}).get(label) == p]:
                return
            time.sleep(0.5)
        self.remove_project(label, p)

    def cold_swarm(self, n):
        p = self.project(f"swarm{n}")
        m = self.events.mark()
        t0 = time.time()
        try:
            self.swarm_service(p, n)
            done = self.events.wait_started(
                m, lambda e: e.attrs.get("com.docker.swarm.service.name") == p, n, 120 + 2 * n)
        finally:
            self.swarm_rm(p)
        if done is None:
            raise RuntimeError("swarm: start events missing")
        return done.t - t0, {}

    def repeat(self, name, fn, runs, *args):
        times, details = [], []
        for i in range(runs):
            t, d = fn(*args)
            log(f"{name} run {i + 1}/{runs}: {t:.2f} s")
            times.append(t)
            details.append(d)
            time.sleep(1)
        return {"stats": stats(times), "details": details}

    def phase_cold(self):
        res = self.results.setdefault("cold", {})
        # The floor's best parallelism, found at N=50 and reused at N=200.
        levels = {}
        for level in self.n("floor_levels"):
            self.note_load(f"floor parallel {level}")
            levels[level] = self.repeat(f"floor n=50 p={level}", self.cold_floor,
                                        self.n("floor_level_runs"), 50, level)
        best = min(levels, key=lambda k: levels[k]["stats"]["median"])
        res["floor_levels"] = {str(k): v["stats"] for k, v in levels.items()}
        res["floor_best"] = best
        for n, key in ((50, "cold50"), (200, "cold200")):
            runs = self.n(key)
            rows = {"drover": [], "floor": [], "compose": []}
            detail = {"drover": [], "floor": [], "compose": []}
            self.note_load(f"cold start {n}")
            # Interleave the peers run by run so slow moments on the machine hit all of them.
            for i in range(runs):
                for peer, fn, extra in (("drover", self.cold_drover, ()),
                                        ("floor", self.cold_floor, (best,)),
                                        ("compose", self.cold_compose, ())):
                    t, d = fn(n, *extra)
                    log(f"cold {n} {peer} run {i + 1}/{runs}: {t:.2f} s")
                    rows[peer].append(t)
                    detail[peer].append(d)
                    time.sleep(1)
            res[str(n)] = {peer: stats(v) for peer, v in rows.items()}
            res[str(n) + "_detail"] = detail

    # ------------------------------------------------------------------ recovery
    def trial(self, kind, cid, replacement, timeout):
        """Disrupt one container; seconds from its die/destroy event to the replacement's start."""
        m = self.events.mark()
        if kind == "sigkill":
            pid = self.engine.inspect(cid)["State"]["Pid"]
            os.kill(pid, signal.SIGKILL)
        elif kind == "kill":
            self.engine.kill(cid)
        else:
            self.engine.remove(cid)
        gone = "destroy" if kind == "rm" else "die"
        ev = self.events.wait(m, lambda e: e.id == cid and e.action == gone, 20)
        if ev is None:
            raise RuntimeError(f"no {gone} event for {cid[:12]}")
        rep = self.events.wait(ev.index + 1, lambda e: e.action == "start" and replacement(e), timeout)
        return (rep.t - ev.t if rep else None), ev, rep

    def running(self, label, value):
        return [c for c in self.engine.containers(all=False, filters={"label": [f"{label}={value}"]})]

    def wait_running(self, label, value, n, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_drover()
            cs = self.running(label, value)
            if len(cs) >= n:
                return cs
            time.sleep(0.3)
        raise RuntimeError(f"{label}={value}: fewer than {n} running after {timeout}s")

    def recovery_drover(self, trials):
        p = self.project("recovery")
        k = 3 * trials
        proc = self.start_drover(p, k)
        out = {}
        try:
            self.wait_running("drover.project", p, k, 120)
            time.sleep(2)
            slot = 0
            for kind in ("sigkill", "kill", "rm"):
                times, parts = [], []
                for _ in range(trials):
                    # Each trial on its own slot: no slot crashes twice, so no crash backoff.
                    slot += 1
                    c = [c for c in self.running("drover.project", p)
                         if c["Labels"].get("drover.slot") == str(slot)][0]
                    t, ev, rep = self.trial(kind, c["Id"], lambda e, s=str(slot): (
                        e.attrs.get("drover.project") == p and e.attrs.get("drover.slot") == s), 15)
                    times.append(t)
                    parts.append((ev.t, rep.t if rep else None, slot))
                    log(f"recovery drover {kind} slot {slot}: {fmt_s(t)}")
                    time.sleep(0.5)
                out[kind] = {"stats": stats(times), "never": times.count(None), "trials": len(times),
                             "parts": parts}
        finally:
            self.stop_drover(proc)
            self.remove_project("drover.project", p)
        # Where the time went: event -> drover's action begins (reaction), then the engine call.
        recs = [r for r in self.drover_log(proc) if r.get("action") in ("start", "create")
                and "timestamp" in r]
        for kind, o in out.items():
            react, act = [], []
            for t_ev, t_rep, slot in o.pop("parts"):
                if t_rep is None:
                    continue
                for r in recs:
                    end = parse_ts(r["timestamp"])
                    begin = end - r.get("duration_ms", 0) / 1000
                    if r.get("slot") == slot and begin >= t_ev - 0.05 and end <= t_rep + 5:
                        react.append(begin - t_ev)
                        act.append(r.get("duration_ms", 0) / 1000)
                        break
            o["reaction"] = stats(react)
            o["action"] = stats(act)
        return out

    def recovery_engine(self, trials, never_trials):
        p = self.project("policy")
        k = trials + 2 * never_trials

        def make(i):
            r = self.engine.call("POST", f"/containers/create?name={p}-{i}", {
                "Image": IMAGE, "Cmd": ["sleep", "86400"], "Labels": {"bench.project": p},
                "HostConfig": {"RestartPolicy": {"Name": "always"}}})
            self.engine.call("POST", f"/containers/{r['Id']}/start", ok=(204, 304))
            return r["Id"]

        out = {}
        try:
            with ThreadPoolExecutor(8) as ex:
                ids = list(ex.map(make, range(1, k + 1)))
            time.sleep(2)
            pool = list(ids)
            for kind, n in (("sigkill", trials), ("kill", never_trials), ("rm", never_trials)):
                times = []
                for _ in range(n):
                    # A fresh container per trial: the engine's own backoff never kicks in.
                    cid = pool.pop(0)
                    t, _, _ = self.trial(kind, cid, lambda e, c=cid: e.id == c, 10)
                    times.append(t)
                    log(f"recovery engine policy {kind}: {fmt_s(t)}")
                out[kind] = {"stats": stats(times), "never": times.count(None), "trials": len(times)}
        finally:
            self.remove_project("bench.project", p)
        return out

    def recovery_swarm(self, trials):
        p = self.project("swarmrec")
        k = 3 * trials
        label = "com.docker.swarm.service.name"
        out = {}
        try:
            self.swarm_service(p, k)
            self.wait_running(label, p, k, 180)
            time.sleep(2)
            used = set()
            for kind in ("sigkill", "kill", "rm"):
                times = []
                for _ in range(trials):
                    c = [c for c in self.running(label, p) if c["Id"] not in used][0]
                    used.add(c["Id"])
                    t, _, rep = self.trial(kind, c["Id"], lambda e: e.attrs.get(label) == p, 20)
                    if rep is not None:
                        used.add(rep.id)
                    times.append(t)
                    log(f"recovery swarm {kind}: {fmt_s(t)}")
                    time.sleep(0.5)
                out[kind] = {"stats": stats(times), "never": times.count(None), "trials": len(times)}
        finally:
            self.swarm_rm(p)
        return out

    def phase_recovery(self):
        self.note_load("recovery")
        res = self.results.setdefault("recovery", {})
        res["drover"] = self.recovery_drover(self.n("recovery"))
        res["engine"] = self.recovery_engine(self.n("recovery"), self.n("recovery_never"))

    # ------------------------------------------------------------------ swarm
    def phase_swarm(self, do_cold, do_recovery):
        state = self.engine.swarm_state()
        if state not in ("inactive", ""):
            self.results["swarm_skipped"] = f"the engine was already in swarm state '{state}'"
            log("swarm: skipped, " + self.results["swarm_skipped"])
            return
        r = subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                           capture_output=True, text=True)
        self.swarm_ours = True
        try:
            if r.returncode != 0:
                raise RuntimeError(f"docker swarm init failed: {r.stderr.strip()}")
            time.sleep(2)
            if do_cold:
                for n, key in ((50, "cold50"), (200, "swarm_cold200")):
                    self.note_load(f"swarm cold start {n}")
                    rep = self.repeat(f"cold {n} swarm", self.cold_swarm, self.n(key), n)
                    self.results.setdefault("cold", {}).setdefault(str(n), {})["swarm"] = rep["stats"]
            if do_recovery:
                self.note_load("swarm recovery")
                self.results.setdefault("recovery", {})["swarm"] = self.recovery_swarm(
                    self.n("recovery_swarm"))
        finally:
            self.leave_swarm()

    def leave_swarm(self):
        if not self.swarm_ours:
            return
        for name in self.swarm_services():
            subprocess.run(["docker", "service", "rm", name], capture_output=True)
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
        self.swarm_ours = False
        log("swarm: left")

    # ------------------------------------------------------------------ burst
    def phase_burst(self):
        self.note_load("burst")
        p = self.project("burst")
        proc = self.start_drover(p, 100)
        runs = []
        last_half = {}
        try:
            self.wait_running("drover.project", p, 100, 300)
            time.sleep(2)
            for i in range(self.n("burst")):
                half = i % 2
                # A slot whose container crashes again within 30 s of its restart backs off:
                # alternate halves and let a half rest 31 s before it is hit again.
                if half in last_half:
                    rest = last_half[half] + 31 - time.time()
                    if rest > 0:
                        log(f"burst: waiting {rest:.0f} s so the crash history resets")
                        time.sleep(rest)
                runs.append(self.burst_once(p, half))
                last_half[half] = time.time()
                log(f"burst run {i + 1}: all back in {fmt_s(runs[-1]['back'])}, "
                    f"peak {runs[-1]['peak']}, low {runs[-1]['low']}")
                time.sleep(1)
        finally:
            self.stop_drover(proc)
            self.remove_project("drover.project", p)
        # Where the time went: when drover's restart calls began, relative to the first die.
        # A long gap between two consecutive begins is a pass that waited for an earlier one.
        recs = [r for r in self.drover_log(proc) if r.get("action") == "start" and "timestamp" in r]
        for run in runs:
            if run["back"] is None:
                continue
            spans = []
            for r in recs:
                end = parse_ts(r["timestamp"])
                begin = end - r.get("duration_ms", 0) / 1000
                if run["first_die"] - 0.05 <= begin <= run["first_die"] + run["back"]:
                    spans.append((begin - run["first_die"], end - begin))
            spans.sort()
            run["restarts"] = len(spans)
            if spans:
                gaps = [(spans[i + 1][0] - spans[i][0], i + 1) for i in range(len(spans) - 1)] or [(0, 0)]
                gap, at = max(gaps)
                run["first_call_s"] = spans[0][0]
                run["last_call_s"] = spans[-1][0]
                run["call_ms_median"] = statistics.median(d for _, d in spans) * 1000
                run["largest_gap_s"] = gap
                run["calls_before_gap"] = at
        self.results["burst"] = {"back": stats([r["back"] for r in runs]),
                                 "peak": max(r["peak"] for r in runs),
                                 "peak_polled": max(r["peak_polled"] for r in runs),
                                 "low": min(r["low"] for r in runs), "runs": runs}

    def burst_once(self, p, half):
        running = {c["Id"]: c for c in self.running("drover.project", p)}
        if len(running) != 100:
            raise RuntimeError(f"burst: {len(running)} running before the burst")
        targets = [cid for cid, c in running.items() if int(c["Labels"]["drover.slot"]) % 2 == half]
        pids = [self.engine.inspect(cid)["State"]["Pid"] for cid in targets]
        # Count running containers independently of events too, every 100 ms.
        polled = []
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                polled.append(len(self.running("drover.project", p)))
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        m = self.events.mark()
        poller.start()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        live = set(running)
        died = set()
        first_die, back_at, peak, low = None, None, len(live), len(live)
        deadline = time.time() + 120
        i = m
        while back_at is None and time.time() < deadline:
            ev = self.events.wait(i, lambda e: e.attrs.get("drover.project") == p, 1)
            if ev is None:
                continue
            i = ev.index + 1
            if ev.action == "die":
                live.discard(ev.id)
                died.add(ev.id)
                first_die = first_die or ev.t
            elif ev.action == "start":
                live.add(ev.id)
            elif ev.action == "destroy":
                live.discard(ev.id)
            peak, low = max(peak, len(live)), min(low, len(live))
            if len(live) == 100 and died.issuperset(targets):
                back_at = ev.t
        time.sleep(1)
        stop.set()
        poller.join()
        return {"back": (back_at - first_die) if back_at else None, "peak": peak, "low": low,
                "first_die": first_die,
                "peak_polled": max(polled) if polled else None}

    # ------------------------------------------------------------------ footprint
    def phase_footprint(self):
        self.note_load("footprint")
        n = self.n("footprint_n")
        idle = self.n("idle_seconds")
        p = self.project("footprint")
        proxy_sock = os.path.join(self.work, "proxy.sock")
        proxy_log = os.path.join(self.work, "proxy.log")
        proxy = subprocess.Popen([sys.executable, os.path.join(REPO, "bench", "apiproxy.py"),
                                  proxy_sock, SOCK, proxy_log])
        for _ in range(50):
            if os.path.exists(proxy_sock):
                break
            time.sleep(0.1)
        proc = self.start_drover(p, n, host=f"unix://{proxy_sock}")
        try:
            m = self.events.mark()
            t0 = time.time()
            done = self.events.wait_started(m, lambda e: e.attrs.get("drover.project") == p, n, 900)
            if done is None:
                raise RuntimeError(f"footprint: {n} containers not running; see {proc.logpath}")
            log(f"footprint: {n} running after {time.time() - t0:.0f} s; settling")
            time.sleep(10)
            self.note_load("footprint idle window")
            pid = proc.pid
            hz = os.sysconf("SC_CLK_TCK")
            cpu0, w0 = cpu_ticks(pid), time.time()
            rss = []
            while time.time() - w0 < idle:
                rss.append(proc_status(pid, "VmRSS"))
                time.sleep(1)
            cpu1, w1 = cpu_ticks(pid), time.time()
            hwm = proc_status(pid, "VmHWM")
            still = len(self.running("drover.project", p))
        finally:
            self.stop_drover(proc)
            proxy.terminate()
            proxy.wait()
        reqs = []
        with open(proxy_log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    reqs.append((float(parts[0]), parts[1], parts[2], int(parts[3]) if len(parts) > 3 else 0))
        window = [r for r in reqs if w0 <= r[0] <= w1]
        kinds = {}
        for _, method, path, _ in window:
            k = f"{method} {endpoint_kind(path)}"
            kinds[k] = kinds.get(k, 0) + 1
        minutes = (w1 - w0) / 60
        self.results["footprint"] = {
            "containers": n, "running_at_end": still, "idle_s": w1 - w0,
            "rss_mib": max(rss) / 1024, "rss_median_mib": statistics.median(rss) / 1024,
            "hwm_mib": hwm / 1024,
            "cpu_pct": 100 * (cpu1 - cpu0) / hz / (w1 - w0),
            "requests_per_min": len(window) / minutes,
            "by_kind_per_min": {k: v / minutes for k, v in sorted(kinds.items())},
            "bytes_per_min": ((window[-1][3] - window[0][3]) / minutes) if len(window) > 1 else 0,
            "requests_during_start": len([r for r in reqs if r[0] < w0]),
            "start_by_kind": count_kinds(r for r in reqs if r[0] < w0),
        }
        log(f"footprint: {self.results['footprint']}")
        self.note_load("footprint cleanup")
        self.remove_project("drover.project", p)

    # ------------------------------------------------------------------ main
    # ------------------------------------------------------------------ node loss
    def phase_nodeloss(self):
        """Three nodes (dockerd in network namespaces, TLS), 6 replicas: kill the engine of
        the node with the most replicas and time until all 6 run on the others (polled
        every 50 ms over the nodes' sockets)."""
        self.note_load("nodeloss")
        node_sh = os.path.join(REPO, "scripts", "node.sh")
        names, first = ["bnl-a", "bnl-b", "bnl-c"], 121
        trials = 2 if self.quick else 5
        p = self.project("nodeloss")
        yaml = COMPOSE + "x-drover:\n  nodes:\n"
        try:
            for i, n in enumerate(names):
                subprocess.run([node_sh, "start", n, str(first + i)], check=True,
                               capture_output=True)
                env = dict(line.split("=", 1) for line in subprocess.run(
                    [node_sh, "env", n], capture_output=True, text=True, check=True).stdout.split())
                yaml += (f"    - name: {n}\n      host: {env['DOCKER_HOST']}\n"
                         f"      tls: {{ cert_path: {env['DOCKER_CERT_PATH']} }}\n")
            path = os.path.join(self.work, "nodeloss.yml")
            with open(path, "w") as f:
                f.write(yaml)

            def on(n, all_states=False):
                out = subprocess.run(
                    ["docker", "-H", f"unix:///run/drover-{n}.sock", "ps", "-q"]
                    + (["-a"] if all_states else [])
                    + ["--filter", f"label=drover.project={p}"],
                    capture_output=True, text=True).stdout
                return len(out.split())

            def wait(cond, timeout=120):
                end = time.time() + timeout
                while time.time() < end:
                    if cond():
                        return True
                    time.sleep(0.05)
                return False

            args = [self.drover, "run", "-f", path, "-p", p, "--scale", "web=6",
                    "--log-format", "json", "--lease-ttl", "0s", *self.listen_off]
            logpath = os.path.join(self.work, f"{p}.log")
            out = open(logpath, "w")
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.work)
            proc.logpath, proc.logfile = logpath, out
            self.current = proc
            if not wait(lambda: sum(on(n) for n in names) == 6):
                raise RuntimeError("node loss: 6 replicas never ran over 3 nodes")
            times = []
            for _ in range(trials):
                victim = max(names, key=on)
                others = [n for n in names if n != victim]
                t0 = time.time()
                subprocess.run([node_sh, "kill", victim], check=True, capture_output=True)
                ok = wait(lambda: sum(on(n) for n in others) == 6)
                times.append(time.time() - t0 if ok else None)
                log(f"node loss: {victim} killed, replicas elsewhere after "
                    f"{fmt_s(times[-1] if ok else None)}")
                subprocess.run([node_sh, "restart", victim], check=True, capture_output=True)
                wait(lambda: on(victim, all_states=True) == 0)
            self.stop_drover(proc)
            self.results["nodeloss"] = stats(times)
        finally:
            for n in names:
                subprocess.run([node_sh, "destroy", n], capture_output=True)

    def run(self):
        phases = set(self.args.only.split(",")) if self.args.only else \
            {"cold", "recovery", "burst", "footprint", "swarm", "nodeloss"}
        self.results["started"] = time.time()
        self.results["env"] = environment(self)
        self.note_load("start")
        self.events.start_and_wait()
        self.sweep()
        if "cold" in phases:
            self.phase_cold()
        if "recovery" in phases:
            self.phase_recovery()
        if "swarm" in phases and ("cold" in phases or "recovery" in phases):
            self.phase_swarm("cold" in phases, "recovery" in phases)
        if "burst" in phases:
            self.phase_burst()
        if "footprint" in phases:
            self.phase_footprint()
        if "nodeloss" in phases:
            self.phase_nodeloss()
        self.note_load("end")
        self.results["finished"] = time.time()


def fmt_s(t):
    return "never" if t is None else f"{t:.3f} s"


def parse_ts(s):
    """RFC 3339 with fractional seconds and Z or an offset, to unix time."""
    from datetime import datetime
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits):]
        s = f"{head}.{digits[:6]:0<6}{tz}"
    return datetime.fromisoformat(s).timestamp()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


def count_kinds(reqs):
    out = {}
    for _, method, path, _ in reqs:
        k = f"{method} {endpoint_kind(path)}"
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def endpoint_kind(path):
    path = path.split("?")[0]
    parts = [p for p in path.split("/") if p]
    if parts and parts[0].startswith("v1."):
        parts = parts[1:]
    if len(parts) >= 3 and parts[0] == "containers":
        return f"/containers/{{id}}/{parts[2]}"
    return "/" + "/".join(parts)


def environment(b):
    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return ""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = proc_meminfo()
    ver = b.engine.call("GET", "/version")
    info = b.engine.call("GET", "/info")
    comps = {c.get("Name"): c.get("Version") for c in ver.get("Components", [])}
    debian = ""
    if os.path.exists("/etc/debian_version"):
        debian = open("/etc/debian_version").read().strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(), "debian": debian,
        "engine": ver.get("Version"), "api": ver.get("ApiVersion"),
        "containerd": comps.get("containerd"), "runc": comps.get("runc"),
        "storage": info.get("Driver"), "cgroup": info.get("CgroupVersion"),
        "compose": cmd("docker", "compose", "version", "--short"),
        "drover": cmd("git", "describe", "--always", "--dirty"),
        "python": platform.python_version(),
    }


def proc_meminfo():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def write_report(path, doc):
    """Write the report, keeping the scale section bench/scale.py maintains there."""
    import scale
    old = open(path).read() if os.path.exists(path) else ""
    start, end = old.find(scale.BEGIN), old.find(scale.END)
    if 0 <= start < end:
        block = old[start:end + len(scale.END)]
        at = doc.find("\n## ")
        doc = doc[:at + 1] + block + "\n\n" + doc[at + 1:] if at >= 0 else doc + "\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs: under 10 minutes instead of about 20 on a quiet machine")
    ap.add_argument("--only", help="comma-separated phases: cold,recovery,swarm,burst,footprint,nodeloss")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")))
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "benchmarks.md"),
                    help="report to write (default docs/benchmarks.md)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the report from saved results")
    args = ap.parse_args()

    if args.render:
        with open(args.render) as f:
            table, doc = report.render(json.load(f))
        print(table)
        write_report(args.out, doc)
        return

    b = Bench(args)

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    try:
        b.run()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        raise
    finally:
        try:
            b.leave_swarm()
        finally:
            b.sweep()
            log("cleaned up")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(b.results, f, indent=1, default=str)
    table, doc = report.render(b.results)
    print(table)
    write_report(args.out, doc)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
