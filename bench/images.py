#!/usr/bin/env python3
"""Following image tags: how long from `docker push` of a new image to every replica
running it, and what an idle check costs the registry; beside watchtower's behaviour.

    ./bench/images.sh [--quick] [--every 5s] [--json FILE]

On the local engine, against a real private registry (Debian's `docker-registry`, basic
auth, request log at info level, started here on loopback): a service of 3 replicas with
`pull_policy: every_<d>` and a healthcheck, rolled start-first. Each trial builds a new
image, pushes it under the same tag and times

- push -> seen: from the start of `docker push` to drover's `tag-moved` decision;
- push -> all running: to the moment every replica runs the new digest (its
  `drover.image-digest` label), sampled every 50 ms.

Then it counts the registry requests over idle checks (nothing moved). watchtower is not
run (archived, and broken on Engine 28/29): its figures are what its code does, stated
beside ours.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_IMAGE = "drover-test/busybox:latest"
USER, PASSWORD = "bench", "bench-Pa55word"


def log(msg):
    print(f"images: {msg}", file=sys.stderr, flush=True)


def run(*args, env=None, check=True):
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seconds(text):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


class Registry:
    """A docker-registry with basic auth on a loopback port, logging every request."""

    def __init__(self, work):
        binary = run(os.path.join(REPO, "scripts", "registry.sh")).strip()
        self.dir = os.path.join(work, "registry")
        os.makedirs(os.path.join(self.dir, "data"))
        with open(os.path.join(self.dir, "htpasswd"), "w") as f:
            f.write(run("htpasswd", "-Bbn", USER, PASSWORD))
        self.host = f"127.0.0.1:{free_port()}"
        with open(os.path.join(self.dir, "config.yml"), "w") as f:
            f.write(f"""version: 0.1
log: {{ level: info, formatter: text }}
storage: {{ filesystem: {{ rootdirectory: {self.dir}/data }}, delete: {{ enabled: true }} }}
http: {{ addr: {self.host} }}
auth: {{ htpasswd: {{ realm: bench, path: {self.dir}/htpasswd }} }}
""")
        self.logpath = os.path.join(self.dir, "registry.log")
        self.proc = subprocess.Popen([binary, "serve", os.path.join(self.dir, "config.yml")],
                                     stdout=open(self.logpath, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(tuple(self.host.split(":")), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the registry did not start")

    def requests(self):
        """Completed requests so far: (method, uri) per line."""
        out = []
        with open(self.logpath) as f:
            for line in f:
                if "response completed" not in line:
                    continue
                fields = dict(p.split("=", 1) for p in line.split() if "=" in p and '"' not in p[:1])
                method = fields.get("http.request.method", "?").strip('"')
                uri = fields.get("http.request.uri", "?").strip('"')
                out.append((method, uri))
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Bench:
    def __init__(self, args):
        self.args = args
        self.every = args.every
        self.work = tempfile.mkdtemp(prefix="drover-bench-images-")
        self.project = f"bench-img-{uuid.uuid4().hex[:6]}"
        self.drover = os.path.join(args.target_dir, "release", "drover")
        self.config_dir = os.path.join(self.work, "docker-config")
        self.registry = Registry(self.work)
        self.image = f"{self.registry.host}/{self.project}:live"
        env = dict(os.environ, DOCKER_CONFIG=self.config_dir)
        subprocess.run(["docker", "login", "-u", USER, "--password-stdin", self.registry.host],
                       input=PASSWORD, capture_output=True, text=True, env=env, check=True)
        self.env = env
        self.local = []

    def build_and_push(self, rev):
        """Build an image differing by a label, push it under the tag; its digest."""
        ctx = os.path.join(self.work, f"ctx-{rev}")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f'FROM {TEST_IMAGE}\nLABEL bench.rev="{rev}"\n'
                    'CMD ["/bin/sh", "-c", "echo ok > /ok; exec sleep 86400"]\n')
        local = f"drover-bench/images:{self.project}-{rev}"
        run("docker", "build", "-q", "-t", local, ctx)
        run("docker", "tag", local, self.image)
        started = time.time()
        out = run("docker", "push", self.image, env=self.env)
        digest = next(w for w in out.split() if w.startswith("sha256:"))
        run("docker", "rmi", self.image, local, check=False)
        return started, digest

    def digests(self):
        out = run("docker", "ps", "--filter", f"label=drover.project={self.project}",
                  "--filter", "label=drover.service=web", "--filter", "status=running",
                  "--format", '{{.Label "drover.image-digest"}}')
        return out.split()

    def wait_all_on(self, digest, deadline):
        end = time.time() + deadline
        while time.time() < end:
            d = self.digests()
            if len(d) == 3 and all(x == digest for x in d):
                return time.time()
            self.check_drover()
            time.sleep(0.05)
        raise RuntimeError(f"replicas not all on {digest} within {deadline} s: {self.digests()}")

    def check_drover(self):
        if self.proc.poll() is not None:
            raise RuntimeError("drover exited: " + open(self.logpath).read()[-600:])

    def drover_events(self):
        out = []
        with open(self.logpath) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def seen_at(self, digest):
        for e in self.drover_events():
            fields = e.get("fields", e)
            if fields.get("reason") == "tag-moved" and fields.get("desired") == digest:
                ts = e.get("timestamp")
                return parse_ts(ts) if ts else None
        return None

    def start_drover(self):
        compose = os.path.join(self.work, "compose.yml")
        with open(compose, "w") as f:
            f.write(f"""services:
  web:
    image: {self.image}
    pull_policy: every_{self.every}
    scale: 3
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "sh", "-c", "test -f /ok"]
      interval: 1s
      timeout: 1s
      retries: 1
    deploy:
      update_config: {{ order: start-first, monitor: 1s, failure_action: rollback }}
""")
        self.logpath = os.path.join(self.work, "drover.log")
        self.proc = subprocess.Popen(
            [self.drover, "run", "-f", compose, "-p", self.project, "--log-format", "json",
             "--listen", "off", "--lease-ttl", "0s"],
            stdout=open(self.logpath, "w"), stderr=subprocess.STDOUT, cwd=self.work, env=self.env)

    def run(self):
        trials = 3 if self.args.quick else 6
        idle_checks = 4 if self.args.quick else 10
        _, first = self.build_and_push("v0")
        self.start_drover()
        self.wait_all_on(first, 120)
        log(f"3 replicas on {first[:19]}; {trials} trials, checks every {self.every}")
        results = {"every_s": seconds(self.every), "replicas": 3, "trials": []}
        for n in range(1, trials + 1):
            # Push at a random point of the check interval, as a real push would land.
            time.sleep((n * 0.37 % 1.0) * seconds(self.every))
            pushed, digest = self.build_and_push(f"v{n}")
            done = self.wait_all_on(digest, 180)
            seen = self.seen_at(digest)
            trial = {"push_to_all_s": done - pushed,
                     "push_to_seen_s": (seen - pushed) if seen else None}
            results["trials"].append(trial)
            log(f"trial {n}: {trial}")
        # Idle: nothing moves; count the registry's requests per check.
        time.sleep(2)
        before = len(self.registry.requests())
        time.sleep(idle_checks * seconds(self.every) + 1)
        idle = self.registry.requests()[before:]
        # One check is one HEAD of the manifest (the engine then GETs the manifest and its
        # config for the platform); an engine that only GETs counts by GETs.
        heads = sum(1 for m, u in idle if m == "HEAD" and "/manifests/" in u)
        checks = heads or sum(1 for m, u in idle if "/manifests/" in u)
        kinds = {}
        for m, u in idle:
            k = f"{m} {'/v2/' if u == '/v2/' else ('manifest' if '/manifests/' in u else ('blob' if '/blobs/' in u else u))}"
            kinds[k] = kinds.get(k, 0) + 1
        results["idle"] = {"checks": checks, "requests": len(idle),
                           "per_check": len(idle) / checks if checks else None,
                           "by_kind": kinds}
        log(f"idle: {results['idle']}")
        return results

    def cleanup(self):
        if getattr(self, "proc", None) and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        ids = run("docker", "ps", "-aq", "--filter", f"label=drover.project={self.project}").split()
        if ids:
            run("docker", "rm", "-f", *ids, check=False)
        for net in run("docker", "network", "ls", "-q", "--filter",
                       f"label=drover.project={self.project}").split():
            run("docker", "network", "rm", net, check=False)
        images = run("docker", "images", "-q", "--filter",
                     f"reference={self.registry.host}/*").split()
        images += run("docker", "images", "-q", "--filter",
                      f"reference=drover-bench/images:{self.project}-*").split()
        if images:
            run("docker", "rmi", "-f", *sorted(set(images)), check=False)
        self.registry.stop()


def parse_ts(s):
    # RFC 3339 with nanoseconds, as drover's JSON logs write it.
    import calendar
    base, _, frac = s.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def table(r):
    all_s = [t["push_to_all_s"] for t in r["trials"]]
    seen = [t["push_to_seen_s"] for t in r["trials"] if t["push_to_seen_s"] is not None]
    idle = r["idle"]
    every = r["every_s"]
    rows = [
        ("check interval", f"{every:g} s (pull_policy: every_{every:g}s)",
         "24 h by default (--interval / WATCHTOWER_POLL_INTERVAL)"),
        ("push -> new digest seen (median, max)",
         f"{statistics.median(seen):.1f} s, {max(seen):.1f} s" if seen else "n/a",
         "up to one interval"),
        ("push -> all 3 replicas on it (median, max)",
         f"{statistics.median(all_s):.1f} s, {max(all_s):.1f} s",
         "interval + pull + stop/start, one container after another, no health gate"),
        ("registry requests per idle check",
         f"{idle['per_check']:.1f} for the service's 3 replicas ({', '.join(f'{k}: {v}' for k, v in sorted(idle['by_kind'].items()))} over {idle['checks']} checks)",
         "per container: GET /v2/, a token GET (bearer registries), HEAD of the manifest;"
         " with basic auth it pulls instead"),
        ("a new image that fails its healthcheck", "rolled back, digest refused until the tag moves",
         "left running"),
    ]
    w0 = max(len(a) for a, _, _ in rows)
    lines = [f"{'':{w0}}  drover  |  watchtower (from its code)"]
    for a, b, c in rows:
        lines.append(f"{a:{w0}}  {b}  |  {c}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 trials and 4 idle checks")
    ap.add_argument("--every", default="5s", help="the check interval (default 5s)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR",
                                                           os.path.join(REPO, "target")))
    args = ap.parse_args()
    b = Bench(args)
    try:
        r = b.run()
    finally:
        b.cleanup()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    print(table(r))


if __name__ == "__main__":
    main()
