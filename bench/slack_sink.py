"""A recording HTTP sink for the digest step: `python -m bench.slack_sink --port P`.

A Slack incoming-webhook stand-in: any ``POST`` is answered ``200 ok`` (what Slack
answers) and recorded with its arrival time (``time.time()``), path and body.
Unlike `bench.sink` (a counter built for speed) it keeps everything, so it is only
fed a few hundred requests; the standard library's threading server is plenty.

``GET /_stats`` answers ``{"paths": {path: count}, "requests": [{"t", "path",
"bytes"}, ...]}``, and with ``?bodies=1`` every request's body (text) as well;
``GET /_reset`` forgets everything. Neither is recorded.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_lock = threading.Lock()
_paths: Counter[str] = Counter()
_requests: list[dict[str, Any]] = []
_bodies: list[str] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Slack's endpoint

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        with _lock:
            if url.path == "/_reset":
                _paths.clear()
                _requests.clear()
                _bodies.clear()
                doc: dict[str, Any] = {}
            else:
                doc = {"paths": dict(_paths), "requests": list(_requests)}
                if "bodies=1" in url.query:
                    doc["bodies"] = list(_bodies)
        self._answer(json.dumps(doc).encode(), "application/json")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        now = time.time()
        path = urlsplit(self.path).path
        with _lock:
            _paths[path] += 1
            _requests.append({"t": now, "path": path, "bytes": len(body)})
            _bodies.append(body.decode("utf-8", errors="replace"))
        self._answer(b"ok", "text/plain")

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.slack_sink")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
