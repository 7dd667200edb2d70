#!/usr/bin/env python3
"""A logging proxy for the Docker Engine API on unix sockets.

    apiproxy.py LISTEN_SOCKET UPSTREAM_SOCKET LOG_FILE

Forwards every connection on LISTEN_SOCKET to UPSTREAM_SOCKET byte for byte and writes
one line per HTTP request the client sends: "<unix time> <method> <path>
<bytes sent to clients so far, all connections>". Requests are found by parsing the client's
side of each connection (request line, headers, then a Content-Length or chunked body),
so keep-alive connections and streaming responses (the event stream) are counted right.
Used by the benchmark to count the API calls a controller makes in steady state.
"""

import os
import socket
import sys
import threading
import time


class RequestParser:
    """Incremental parser of an HTTP/1.1 client byte stream; calls on_request per request."""

    def __init__(self, on_request):
        self.buf = b""
        self.state = "head"
        self.remaining = 0
        self.on_request = on_request

    def feed(self, data):
        self.buf += data
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].decode("latin-1")
                self.buf = self.buf[end + 4:]
                lines = head.split("\r\n")
                parts = lines[0].split(" ")
                method, path = (parts + ["", ""])[:2]
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                self.on_request(method, path)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.state = "chunk-size"
                else:
                    self.remaining = int(headers.get("content-length", "0") or 0)
                    self.state = "body"
            elif self.state == "body":
                take = min(self.remaining, len(self.buf))
                self.buf = self.buf[take:]
                self.remaining -= take
                if self.remaining:
                    return
                self.state = "head"
            elif self.state == "chunk-size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(self.buf[:end].split(b";")[0].strip() or b"0", 16)
                self.buf = self.buf[end + 2:]
                if size == 0:
                    self.state = "trailer"
                else:
                    self.remaining = size + 2  # chunk data and its CRLF
                    self.state = "chunk-data"
            elif self.state == "chunk-data":
                take = min(self.remaining, len(self.buf))
                self.buf = self.buf[take:]
                self.remaining -= take
                if self.remaining:
                    return
                self.state = "chunk-size"
            elif self.state == "trailer":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                line = self.buf[:end]
                self.buf = self.buf[end + 2:]
                if not line:
                    self.state = "head"


class Proxy:
    def __init__(self, listen, upstream, log_path):
        self.listen = listen
        self.upstream = upstream
        self.log = open(log_path, "a", buffering=1)
        self.lock = threading.Lock()
        self.sent = 0

    def write(self, line):
        with self.lock:
            self.log.write(line + "\n")

    def serve(self):
        if os.path.exists(self.listen):
            os.unlink(self.listen)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.listen)
        srv.listen(128)
        while True:
            client, _ = srv.accept()
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client):
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.connect(self.upstream)
        except OSError:
            client.close()
            return
        def on_request(method, path):
            self.write(f"{time.time():.6f} {method} {path} {self.sent}")

        parser = RequestParser(on_request)

        def pump(src, dst, parse):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if parse:
                        parser.feed(data)
                    else:
                        with self.lock:
                            self.sent += len(data)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(up, client, False), daemon=True)
        t.start()
        pump(client, up, True)
        t.join()
        client.close()
        up.close()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    Proxy(sys.argv[1], sys.argv[2], sys.argv[3]).serve()


if __name__ == "__main__":
    main()
