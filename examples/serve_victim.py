"""Serve any classifier over HTTP in fmsteal's victim schema, so fmsteal (or anyone) can attack it.

    python examples/serve_victim.py file:model.onnx --port 8000       # an ONNX or TorchScript file
    python examples/serve_victim.py api:mymodel:net --answer labels   # any torch classifier (module attribute)
    fmsteal attack --victim-url http://127.0.0.1:8000/predict ...

`POST /predict` takes `{"images": [base64 PNG, ...]}` and answers `{"probabilities": [[...], ...]}`
(or `{"logits": ...}` / `{"labels": ...}` with --answer); the schema is documented in
`fmsteal.victims.url`. `GET /stats` counts the requests and the images answered (the queries
spent), `GET /` describes the victim. In Python: `start_server(callable_victim(model))`.

Built on the standard library's `ThreadingHTTPServer`: one JSON endpoint needs no web framework,
and the example then runs wherever fmsteal does. It is a demo and test server, not a hardened one.

`--fail KIND@WHICH` makes chosen requests fail, for tests: KIND is http500, http429 (with
Retry-After: 1), html (a 200 HTML page), nan, shape (a row short), classes (one class more),
badjson, timeout (answers after --slow seconds) or drop (closes the connection); WHICH numbers
POST requests from 1: `3`, `3-5` or `3+`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from fmsteal.victims import VictimHandle, open_victim
from fmsteal.victims.url import decode_png

__all__ = ["Failure", "VictimServer", "start_server", "main"]

FAILURE_KINDS = ("http500", "http429", "html", "nan", "shape", "classes", "badjson", "timeout", "drop")
MAX_REQUEST_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Failure:
    """Requests `first`..`last` (1-based, inclusive; `last` None = every later one) fail as `kind`."""

    kind: str
    first: int
    last: int | None

    @classmethod
    def parse(cls, text: str) -> "Failure":
        kind, _, which = text.partition("@")
        if kind not in FAILURE_KINDS or not which:
            raise ValueError(f"--fail takes KIND@WHICH with KIND one of {', '.join(FAILURE_KINDS)}; got {text!r}")
        if which.endswith("+"):
            return cls(kind, int(which[:-1]), None)
        first, _, last = which.partition("-")
        return cls(kind, int(first), int(last or first))

    def covers(self, request: int) -> bool:
        return self.first <= request and (self.last is None or request <= self.last)


@dataclass
class VictimServer:
    """A running server: its URL, counters and failure plan."""

    victim: VictimHandle
    answer: str = "probabilities"
    failures: list[Failure] = field(default_factory=list)
    slow: float = 5.0
    requests: int = 0
    images: int = 0
    httpd: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/predict"

    def stats(self) -> dict:
        return {"requests": self.requests, "images": self.images}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_failure(self) -> str | None:
        """Count one more request; the kind of failure planned for it, if any."""
        with self.lock:
            self.requests += 1
            number = self.requests
        return next((f.kind for f in self.failures if f.covers(number)), None)

    def respond(self, body: bytes, failure: str | None) -> tuple[int, str, bytes]:
        """(status, content type, body) for one POST body."""
        if failure == "http500":
            return 500, "text/plain", b"injected failure"
        if failure == "http429":
            return 429, "text/plain", b"too many requests"
        if failure == "html":
            return 200, "text/html", b"<!doctype html><html><body><h1>Sign in</h1></body></html>"
        if failure == "badjson":
            return 200, "application/json", b'{"probabilities": [[0.1, 0.9'
        try:
            images = torch.stack([decode_png(text) for text in json.loads(body)["images"]])
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            return 400, "application/json", json.dumps({"error": f"bad request: {error}"}).encode()
        with self.lock:
            probs = self.victim.probabilities(images)
            self.images += len(images)
        if failure == "nan":
            probs[0, 0] = float("nan")
        elif failure == "shape":
            probs = probs[:-1]
        elif failure == "classes":
            probs = torch.cat([probs, torch.zeros(len(probs), 1)], 1)
        return 200, "application/json", json.dumps(self._encode(probs)).encode()

    def _encode(self, probs: torch.Tensor) -> dict:
        if self.answer == "labels":
            return {"labels": probs.argmax(1).tolist()}
        if self.answer == "logits":
            return {"logits": probs.clamp_min(1e-12).log().tolist()}
        return {"probabilities": probs.tolist()}


def _handler(server: VictimServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stall per request)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/stats":
                self._send(200, "application/json", json.dumps(server.stats()).encode())
            else:
                info = {"victim": server.victim.description, "num_classes": server.victim.num_classes,
                        "answer": server.answer, "schema": "fmsteal-victim/1"}
                self._send(200, "application/json", json.dumps(info).encode())

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/predict":
                self._send(404, "text/plain", b"POST images to /predict")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._send(413, "text/plain", b"request too large")
                return
            body = self.rfile.read(length)
            failure = server.next_failure()
            if failure == "drop":
                self.close_connection = True
                return
            if failure == "timeout":
                threading.Event().wait(server.slow)
            self._send(*server.respond(body, failure), retry_after=failure == "http429")

        def _send(self, status: int, content_type: str, body: bytes, retry_after: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if retry_after:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout)
                pass

        def log_message(self, *args) -> None:  # quiet: tests and demos print their own summaries
            pass

    return Handler


def start_server(victim: VictimHandle, host: str = "127.0.0.1", port: int = 0, answer: str = "probabilities",
                 failures: list[Failure] | None = None, slow: float = 5.0) -> VictimServer:
    """Serve `victim` in a background thread (port 0: any free port); `.url`, `.stats()`, `.close()`."""
    server = VictimServer(victim, answer, list(failures or []), slow)
    server.httpd = ThreadingHTTPServer((host, port), _handler(server))
    server.httpd.daemon_threads = True
    threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a classifier in fmsteal's HTTP victim schema.")
    parser.add_argument("victim", help="an fmsteal victim spec: file:model.onnx, file:model.pt, api:module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port")
    parser.add_argument("--answer", choices=["probabilities", "logits", "labels"], default="probabilities")
    parser.add_argument("--num-classes", type=int, default=None, help="needed when the victim answers labels")
    parser.add_argument("--fail", action="append", default=[], type=Failure.parse, metavar="KIND@WHICH")
    parser.add_argument("--slow", type=float, default=5.0, help="seconds a 'timeout' failure waits")
    args = parser.parse_args(argv)
    victim = open_victim(args.victim, num_classes=args.num_classes)
    server = start_server(victim, args.host, args.port, args.answer, args.fail, args.slow)
    print(f"Serving {victim.description} at {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.close()
        victim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
