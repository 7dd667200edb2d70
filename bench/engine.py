"""Small Docker Engine API client over the unix socket, and an event recorder.

Standard library only: the benchmark must run on a bare Debian machine.
"""

import http.client
import json
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

API = "/v1.41"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class ApiError(Exception):
    def __init__(self, status, method, path, body):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]!r}")
        self.status = status


def q(obj):
    return urllib.parse.quote(json.dumps(obj), safe="")


class Engine:
    """One short-lived connection per call: cheap on a unix socket, and thread-safe."""

    def __init__(self, sock="/var/run/docker.sock"):
        self.sock = sock

    def call(self, method, path, body=None, ok=(200, 201, 204, 304), timeout=120):
        conn = UnixConnection(self.sock, timeout=timeout)
        try:
            headers = {"Host": "docker"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, API + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status not in ok:
            raise ApiError(resp.status, method, path, raw)
        if raw and resp.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(raw)
        return raw

    def containers(self, all=True, filters=None):
        path = f"/containers/json?all={'1' if all else '0'}"
        if filters:
            path += "&filters=" + q(filters)
        return self.call("GET", path)

    def inspect(self, cid):
        return self.call("GET", f"/containers/{cid}/json")

    def kill(self, cid):
        self.call("POST", f"/containers/{cid}/kill", ok=(204,))

    def remove(self, cid):
        # 404: gone already; 409: removal already in progress.
        self.call("DELETE", f"/containers/{cid}?force=1&v=1", ok=(204, 404, 409))

    def remove_many(self, ids, parallel=8):
        ids = list(ids)
        if not ids:
            return
        with ThreadPoolExecutor(parallel) as ex:
            list(ex.map(self.remove, ids))

    def remove_where(self, pred, parallel=8, timeout=300):
        """Remove every container whose labels satisfy pred; wait until none is left."""
        deadline = time.time() + timeout
        while True:
            ids = [c["Id"] for c in self.containers() if pred(c.get("Labels") or {})]
            if not ids:
                return
            if time.time() > deadline:
                raise RuntimeError(f"{len(ids)} containers still there after {timeout}s")
            self.remove_many(ids, parallel)

    def swarm_state(self):
        return self.call("GET", "/info").get("Swarm", {}).get("LocalNodeState", "")


class Event:
    __slots__ = ("t", "action", "id", "attrs", "index")

    def __init__(self, t, action, cid, attrs, index):
        self.t, self.action, self.id, self.attrs, self.index = t, action, cid, attrs, index


class Events(threading.Thread):
    """Records every container event of the engine, with the engine's nanosecond times."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.events = []
        self.cond = threading.Condition()
        self.ready = threading.Event()
        self.error = None
        # Called while waiting; may raise to abandon the wait (e.g. the process under test died).
        self.alive = lambda: None

    def run(self):
        try:
            conn = UnixConnection(self.sock, timeout=None)
            conn.request("GET", API + "/events?filters=" + q({"type": ["container"]}),
                         headers={"Host": "docker"})
            resp = conn.getresponse()
            self.ready.set()
            while True:
                line = resp.readline()
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                ev = json.loads(line)
                actor = ev.get("Actor") or {}
                with self.cond:
                    e = Event(ev.get("timeNano", 0) / 1e9, ev.get("Action") or ev.get("status", ""),
                              actor.get("ID", ""), actor.get("Attributes") or {}, len(self.events))
                    self.events.append(e)
                    self.cond.notify_all()
        except Exception as e:  # noqa: BLE001 - reported by the waiters
            self.error = e
        finally:
            self.ready.set()
            with self.cond:
                self.cond.notify_all()

    def start_and_wait(self):
        self.start()
        self.ready.wait(10)
        if self.error:
            raise RuntimeError(f"event stream: {self.error}")

    def mark(self):
        with self.cond:
            return len(self.events)

    def wait(self, start, pred, timeout):
        """First event at index >= start matching pred, or None after timeout."""
        deadline = time.time() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.events):
                    e = self.events[i]
                    i += 1
                    if pred(e):
                        return e
                if self.error:
                    raise RuntimeError(f"event stream: {self.error}")
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))
                self.alive()

    def wait_started(self, start, pred, n, timeout):
        """The event at which n distinct matching containers have started, or None."""
        seen = set()

        def count(e):
            if e.action == "start" and pred(e):
                seen.add(e.id)
            return len(seen) >= n

        return self.wait(start, count, timeout)

    def since(self, start):
        with self.cond:
            return list(self.events[start:])
