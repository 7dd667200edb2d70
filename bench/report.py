"""Turns the benchmark's results into the printed table and docs/benchmarks.md."""

import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))

TARGET_COLD = 1.2
TARGET_RECOVERY = {"sigkill": 0.3, "rm": 0.5}
TARGET_RSS_MIB = 25
TARGET_CPU_PCT = 1.0
RESYNC_S = 30


def ms(s):
    return None if s is None else s["median"]


def pair(s, unit="s"):
    if s is None:
        return "—"
    if unit == "s":
        return f"{s['median']:.2f} / {s['p95']:.2f} s"
    return f"{s['median'] * 1000:.0f} / {s['p95'] * 1000:.0f} ms"


def ratio(a, b):
    if a is None or b is None or b["median"] == 0:
        return "—"
    return f"{a['median'] / b['median']:.2f}x"


def rec_cell(o, unit="ms"):
    if o is None:
        return "not run"
    if o["stats"] is None:
        return f"never ({o['never']}/{o['trials']} trials)"
    cell = pair(o["stats"], unit)
    if o["never"]:
        cell += f", never in {o['never']}/{o['trials']}"
    return cell


def rows(r):
    """(measurement, drover, peers..., target, verdict) rows, grouped in sections."""
    sections = []
    cold = r.get("cold", {})
    if cold:
        best = cold.get("floor_best")
        head = ["replicas", "drover (median / p95)", f"engine floor, {best} in parallel", "drover / floor",
                "docker compose v2", "drover / compose", "Swarm mode", "drover / Swarm",
                f"target ≤ {TARGET_COLD}x floor"]
        body = []
        for n in ("50", "200"):
            c = cold.get(n)
            if not c:
                continue
            d, f, cp, sw = c.get("drover"), c.get("floor"), c.get("compose"), c.get("swarm")
            met = "—"
            if d and f:
                met = "met" if d["median"] <= TARGET_COLD * f["median"] else "MISSED"
            body.append([n, pair(d), pair(f), ratio(d, f), pair(cp), ratio(d, cp),
                         pair(sw) if sw else r.get("swarm_skipped", "not run"), ratio(d, sw), met])
        sections.append(("Cold start: from nothing to all running", head, body))
    rec = r.get("recovery", {})
    if rec:
        head = ["disruption", "drover (median / p95)", "engine --restart always", "drover / engine",
                "Swarm mode", "drover / Swarm", "target (drover median)"]
        body = []
        names = {"sigkill": "SIGKILL to the main process", "kill": "docker kill", "rm": "docker rm -f"}
        for kind in ("sigkill", "kill", "rm"):
            d = rec.get("drover", {}).get(kind)
            e = rec.get("engine", {}).get(kind)
            s = rec.get("swarm", {}).get(kind)
            tgt = TARGET_RECOVERY.get(kind)
            if tgt is None:
                verdict = "no target"
            elif d is None or d["stats"] is None:
                verdict = f"≤ {tgt} s: MISSED"
            else:
                verdict = f"≤ {tgt} s: " + ("met" if d["stats"]["median"] <= tgt else "MISSED")
            body.append([names[kind], rec_cell(d), rec_cell(e), ratio(d and d["stats"], e and e["stats"]),
                         rec_cell(s) if s else r.get("swarm_skipped", "not run"),
                         ratio(d and d["stats"], s and s["stats"]), verdict])
        sections.append(("Recovery: die (destroy for rm -f) event to the replacement's start event",
                         head, body))
    burst = r.get("burst")
    head = ["measurement", "drover", "target"]
    body = []
    if burst:
        body.append(["burst: SIGKILL 50 of 100 at once, first die to all 100 running",
                     pair(burst["back"]), "—"])
        body.append(["burst: peak running (events / polled every 100 ms), lowest",
                     f"{burst['peak']} / {burst['peak_polled']}, low {burst['low']}",
                     "never above 100: " + ("met" if max(burst["peak"], burst["peak_polled"] or 0) <= 100
                                            else "MISSED")])
    nl = r.get("nodeloss")
    body.append(["node loss: engine of the fullest of 3 nodes killed to its replicas running "
                 "elsewhere (6 replicas)",
                 pair(nl) if nl else "not measured in this run",
                 ("≤ 5 s: " + ("met" if nl["median"] <= 5 else "MISSED")) if nl else "≤ 5 s"])
    fp = r.get("footprint")
    if fp:
        n = fp["containers"]
        body.append([f"RSS, {n} containers idle {fp['idle_s']:.0f} s (max of 1 s samples; peak RSS ever)",
                     f"{fp['rss_mib']:.1f} MiB (peak {fp['hwm_mib']:.1f} MiB)",
                     f"< {TARGET_RSS_MIB} MiB: " + ("met" if fp["rss_mib"] < TARGET_RSS_MIB else "MISSED")])
        body.append([f"CPU, {n} containers idle", f"{fp['cpu_pct']:.2f}% of a core",
                     f"< {TARGET_CPU_PCT}%: " + ("met" if fp["cpu_pct"] < TARGET_CPU_PCT else "MISSED")])
        verdict, _ = api_verdict(fp)
        kinds = ", ".join(f"{k} {v:.1f}" for k, v in fp["by_kind_per_min"].items())
        body.append([f"engine API requests per minute, {n} containers idle",
                     f"{fp['requests_per_min']:.1f} ({kinds}); {fp['bytes_per_min'] / 1024:.0f} KiB/min",
                     verdict])
    sections.append(("Burst, node loss, footprint", head, body))
    return sections


# Requests whose rate does not depend on the number of containers: the node health ping
# and the lease renewal (the only container drover ever updates is its lease container).
CONSTANT = ("GET /_ping", "POST /containers/{id}/update")


def api_verdict(fp):
    per_container = {k: v for k, v in fp["by_kind_per_min"].items()
                     if "{id}" in k and k not in CONSTANT}
    lists = fp["by_kind_per_min"].get("GET /containers/json", 0)
    other = {k: v for k, v in fp["by_kind_per_min"].items()
             if "{id}" not in k and k not in ("GET /containers/json", "GET /events") + CONSTANT}
    reasons = []
    if per_container:
        reasons.append("per-container requests: " + ", ".join(per_container))
    if lists > 60 / RESYNC_S + 0.5:
        reasons.append(f"{lists:.1f} container lists/min where one per {RESYNC_S} s resync makes "
                       f"{60 / RESYNC_S:.0f}")
    if other:
        reasons.append("also " + ", ".join(f"{k} {v:.1f}/min" for k, v in other.items()))
    grows = "grows with the count" if per_container else "nothing grows with the count"
    if reasons:
        return f"one list per resync + events: MISSED ({grows})", reasons
    return f"one list per resync + events: met ({grows})", reasons


def text_table(title, head, body):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = "  ".join("-" * w for w in widths)
    out = [title, line, "  ".join(str(h).ljust(w) for h, w in zip(head, widths)), line]
    for row in body:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    return "\n".join(out)


def md_table(head, body):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in body:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(out)


def render(r):
    sections = rows(r)
    table = "\n\n".join(text_table(*s) for s in sections)
    env = r.get("env", {})
    mode = r.get("mode")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.get("started", time.time())))
    dur = (r.get("finished", time.time()) - r.get("started", time.time())) / 60
    doc = [
        "# Benchmarks",
        "",
        "drover beside the raw engine floor, Docker Compose v2, Swarm mode and the engine's own",
        "restart policy, on the same engine in one run. Reproduce with:",
        "",
        "```sh",
        "./bench/run.sh            # full run: 5 runs at 50 replicas, 3 at 200, 10 trials per recovery",
        "./bench/run.sh --quick    # 2 runs at 50, 1 at 200, 4 trials per recovery",
        "```",
        "",
        "It starts the local engine and builds the test image if needed (`scripts/engine.sh`),",
        "installs Docker Compose v2 when missing (`scripts/compose-v2.sh`), builds drover with",
        "`cargo build --release --locked`, runs every measurement, prints the tables below and",
        "rewrites this file (`--json FILE` keeps the raw results; `--render FILE` rewrites the",
        "report from them). Expect well over 20 minutes for a full run and about 20 for a quick one",
        "on a busy 2-core machine (the last quick run took 21 minutes at a load average of 20); the",
        "repetitions are in `PLAN` at the top of `bench/bench.py`.",
        "Numbers on a shared 2-core machine are noisy: compare the ratios within one run, not",
        "absolute figures across runs.",
        "",
        f"## Last run ({mode} mode, {when}, {dur:.0f} min)",
        "",
        f"- Machine: {env.get('cores')} cores ({env.get('cpu')}), {env.get('mem_gib')} GiB, "
        f"Debian {env.get('debian')}, kernel {env.get('kernel')}, cgroup v{env.get('cgroup')}",
        f"- Engine {env.get('engine')} (API {env.get('api')}), containerd {env.get('containerd')}, "
        f"runc {env.get('runc')}, storage {env.get('storage')}; docker compose {env.get('compose')}; "
        f"drover {env.get('drover')} (release build)",
        "- Load average (1, 5, 15 min) as each phase began: "
        + "; ".join(f"{x['phase']} {x['load']}" for x in r.get("load", [])),
    ]
    loads = [float(x["load"].split()[0]) for x in r.get("load", [])]
    if loads and env.get("cores") and max(loads) > env["cores"]:
        doc.append(f"- **The machine was busy** (1-minute load up to {max(loads):.1f} on {env['cores']} cores, "
                   "other builds and tests running): absolute times are inflated and noisy; the ratios "
                   "between peers measured in the same minutes are the meaningful figures.")
    doc.append("")
    for title, head, body in sections:
        doc += [f"### {title}", "", md_table(head, body), ""]
    doc += verdicts(r)
    doc += method(r)
    notes = os.path.join(HERE, "notes.md")
    if os.path.exists(notes):
        doc += ["", open(notes).read().rstrip(), ""]
    return table, "\n".join(doc) + "\n"


def verdicts(r):
    out = ["## Targets", ""]
    cold = r.get("cold", {})
    for n in ("50", "200"):
        c = cold.get(n) or {}
        d, f = c.get("drover"), c.get("floor")
        if d and f:
            ok = d["median"] <= TARGET_COLD * f["median"]
            line = (f"- Cold start, {n} replicas, within {TARGET_COLD}x of the engine floor at its best "
                    f"parallelism ({cold.get('floor_best')}): **{'met' if ok else 'missed'}** "
                    f"({d['median']:.2f} s against {f['median']:.2f} s, {d['median'] / f['median']:.2f}x).")
            det = (cold.get(n + "_detail") or {})
            dd = [x for x in det.get("drover", []) if x]
            fd = [x for x in det.get("floor", []) if x]
            if dd and fd:
                cr = sorted(v for x in dd for v in x.get("create_ms", []))
                fc = sorted(v for x in fd for v in x.get("create_ms", []))
                fs = sorted(v for x in fd for v in x.get("start_ms", []))
                tfc = sorted(x["to_first_create"] for x in dd if x.get("to_first_create") is not None)
                if cr and fc and fs and tfc:
                    line += (f" Where drover's time goes: {med(tfc):.2f} s from launch to its first create "
                             f"(config, connect, first list); then each create+start took "
                             f"{med(cr):.0f} ms (median) at its default 8 in flight, against the floor's "
                             f"{med(fc):.0f} ms create + {med(fs):.0f} ms start at {cold.get('floor_best')}"
                             f" in flight.")
            out.append(line)
    rec = r.get("recovery", {}).get("drover", {})
    names = {"sigkill": "a SIGKILL", "kill": "`docker kill`", "rm": "`docker rm -f`"}
    for kind in ("sigkill", "kill", "rm"):
        o = rec.get(kind)
        if not o:
            continue
        tgt = TARGET_RECOVERY.get(kind)
        s = o["stats"]
        head = f"- Recovery after {names[kind]}"
        if tgt is None:
            head += " (no target)"
            verdict = ""
        else:
            ok = s is not None and s["median"] <= tgt
            verdict = f" at most {tgt} s: **{'met' if ok else 'missed'}**"
        line = head + verdict + (f" (median {s['median'] * 1000:.0f} ms, p95 {s['p95'] * 1000:.0f} ms"
                                 f" over {s['n']} trials)." if s else " (never recovered).")
        if o.get("reaction") and o.get("action"):
            line += (f" Split: event to drover's engine call {o['reaction']['median'] * 1000:.0f} ms"
                     f" (detect, list, inspect, plan), the call itself {o['action']['median'] * 1000:.0f} ms"
                     f" (median).")
        out.append(line)
    burst = r.get("burst")
    if burst and burst.get("back"):
        b = burst["back"]
        line = (f"- Burst (no time target): 50 of 100 back in {b['median']:.2f} s median, {b['p95']:.2f} s p95;"
                f" the running count peaked at {max(burst['peak'], burst['peak_polled'] or 0)}"
                f" (never above 100: **{'met' if max(burst['peak'], burst['peak_polled'] or 0) <= 100 else 'missed'}**).")
        for i, run in enumerate(burst.get("runs", []), 1):
            if run.get("first_call_s") is None:
                continue
            line += (f" Run {i}: first restart call {run['first_call_s'] * 1000:.0f} ms after the first die,"
                     f" {run['restarts']} calls of {run['call_ms_median']:.0f} ms median, the last begun at"
                     f" {run['last_call_s']:.2f} s; the largest pause between two calls, {run['largest_gap_s']:.2f} s,"
                     f" came after call {run['calls_before_gap']}.")
        out.append(line)
    fp = r.get("footprint")
    if fp:
        out.append(f"- RSS under {TARGET_RSS_MIB} MiB with {fp['containers']} containers: "
                   f"**{'met' if fp['rss_mib'] < TARGET_RSS_MIB else 'missed'}** ({fp['rss_mib']:.1f} MiB idle, "
                   f"{fp['hwm_mib']:.1f} MiB peak while creating them).")
        out.append(f"- Idle CPU under {TARGET_CPU_PCT}% of a core: "
                   f"**{'met' if fp['cpu_pct'] < TARGET_CPU_PCT else 'missed'}** ({fp['cpu_pct']:.2f}%).")
        verdict, reasons = api_verdict(fp)
        out.append(f"- Steady-state API traffic, {verdict.split(': ', 1)[0]}: "
                   f"**{'met' if not reasons else 'missed'}** ({fp['requests_per_min']:.1f} requests/min"
                   + ("; " + "; ".join(reasons) if reasons else "")
                   + "; besides the lists, a health ping per node every 0.5 s and a lease renewal "
                   "every 2.5 s, neither growing with the count).")
    nl = r.get("nodeloss")
    out.append("- Node loss: " + (f"median {nl['median']:.2f} s over {nl['n']} kills (Swarm marks a "
                                   "node down after about 15 s by default, then restarts tasks after "
                                   "a further 5 s)." if nl else "not measured in this run."))
    out.append("")
    return out


def med(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def method(r):
    cold = r.get("cold", {})
    levels = cold.get("floor_levels", {})
    lv = ", ".join(f"{k} in parallel {v['median']:.2f} s" for k, v in levels.items() if v)
    return [
        "## How it is measured",
        "",
        "- Every time comes from the engine's own event stream (`/events`, nanosecond times), read by",
        "  the harness from before each action: no CLI round trips in the figures. Median and p95 over",
        "  the runs (p95 by nearest rank: with fewer than 20 runs it is the slowest run).",
        "- Workload: one service `web`, the offline busybox image, `sleep 86400`, `stop_signal: SIGKILL`.",
        "- **Cold start**: clock starts just before the command is launched and stops at the `start` event",
        "  of the N-th container. drover: `drover run -f compose.yml -p bench-… --scale web=N"
        " --log-format json`",
        "  (its start-up, config load and first list included; default `--parallel 8`). Engine floor:",
        "  `POST /networks/create`, then `POST /containers/create` + `/start` over the socket from a",
        "  thread pool, for the same containers drover and compose make (on the project's own bridge",
        "  network with the service name as an alias), at several parallelism levels, the best median",
        "  kept" + (f" ({lv}; the best is reused at 200)" if lv else "") + ".",
        "  Docker Compose v2: `docker compose -p … up -d --scale web=N` (it also creates the project's",
        "  network). Swarm: `docker service create --detach --no-resolve-image --replicas N` on a",
        "  single-node swarm (`docker swarm init --advertise-addr 127.0.0.1`, left with",
        "  `docker swarm leave --force` at the end of its phase, even on failure); `--no-resolve-image`",
        "  keeps the registry lookup, which cannot succeed offline, out of the figure.",
        "  drover, the floor and compose are interleaved run by run; Swarm runs in its own phase.",
        "- **Recovery**: clock from the container's `die` event (`destroy` for `docker rm -f`) to the",
        "  `start` event of its replacement (same slot for drover; any new task of the service for",
        "  Swarm; the same container for the engine policy). SIGKILL is sent from the host to the",
        "  container's main process (`State.Pid`): a crash. drover: every trial hits a different slot, so",
        "  no slot crashes twice and crash backoff never applies. Engine `--restart always`: a fresh",
        "  container per trial (its own 100 ms doubling backoff never applies); a peer that does not",
        "  restart within 10 s (20 s for Swarm) counts as never.",
        "- **Burst**: drover keeps 100 replicas; SIGKILL from the host to 50 main processes at once (odd",
        "  slots, then even slots; a half is hit again only after 31 s, when its crash history has",
        "  reset). Clock from the first `die` to the event that makes all 100 running again; the",
        "  running count is followed through events and, independently, by listing every 100 ms.",
        "- **Footprint**: drover keeps 500 replicas through a logging proxy for the API socket",
        "  (`bench/apiproxy.py`, passed as `-H unix://…`). Once all run and 10 s have passed, RSS",
        "  (`VmRSS` in `/proc/<pid>/status`, sampled each second) and CPU (`utime + stime` from",
        "  `/proc/<pid>/stat`) over the idle window, and every request the proxy saw in it.",
        "- Everything is labelled or named `bench-…` and removed afterwards, on failure too.",
        "",
    ]
