"""Shared machinery of the loopback provider emulators.

Each emulator is a real HTTP/1.1 server on 127.0.0.1 (ephemeral port, one thread per connection,
keep-alive like the real APIs) so the official SDKs can be pointed at it with ``base_url`` and
exercised end to end: their own request building, auth headers, base64 decoding and error mapping.

What is shared here:

* ``RecordedRequest`` / ``LoopbackServer.requests``: a log of every request received (method, path,
  query, lower-cased headers, parsed JSON body) for field-by-field assertions.
* the request flow that applies a scripted ``Fault`` and the optional ``RateLimiter`` (both in
  ``_faults.py``) before the API answers;
* ``text_vector``: deterministic, MRL-like vectors derived from the text, so tests can predict them.
* ``serve_main``: the ``python -m mrl_retrievers.emulators.<api>_server`` entry point.

Subclasses implement the API: ``authenticate``, ``count_tokens``, ``texts_of``, ``respond`` and the
API's error body format (``error_reply``).
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import math
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from ._faults import FAULT_KINDS, Fault, FaultScript, RateLimiter, mutate_vectors

# --- deterministic vectors ----------------------------------------------------------------------


def text_vector(text: str, dim: int, salt: str = "") -> np.ndarray:
    """The unit-length float32 vector an emulator returns for ``text`` at full width ``dim``.

    Seeded by a hash of ``salt`` (model, task type...) and the text. Coordinates decay with their
    index like a Matryoshka model's, so prefixes carry most of the signal.
    """
    rng = np.random.default_rng(_seed(text, salt))
    vec = rng.standard_normal(dim) / _decay(dim)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def text_vectors(texts: Sequence[str], dim: int, salt: str = "", width: int | None = None) -> np.ndarray:
    """``unit(text_vector(t, dim, salt)[:width])`` for each text, as one ``(n, width)`` float32 matrix.

    The same vectors (to float32 rounding) for a fraction of the CPU: only the ``width`` leading
    draws are made (numpy's normal stream is sequential, so they are the same draws), the decay is
    cached and the scaling is done once for the whole batch. Each row depends on its own text only.
    """
    width = dim if width is None else width
    if not 0 < width <= dim:
        raise ValueError(f"width {width} must lie in 1..{dim}")
    out = np.empty((len(texts), width))
    for i, text in enumerate(texts):
        np.random.default_rng(_seed(text, salt)).standard_normal(out=out[i])
    out /= _decay(dim)[:width]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def _seed(text: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}\x00{text}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little")


@functools.lru_cache(maxsize=32)
def _decay(dim: int) -> np.ndarray:
    decay = np.sqrt(1.0 + np.arange(dim) / 32.0)
    decay.flags.writeable = False
    return decay


def unit(vec: np.ndarray) -> np.ndarray:
    """``vec`` scaled to unit length, as float32."""
    vec = np.asarray(vec, dtype=np.float64)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def encode_base64(vec: np.ndarray) -> str:
    """Little-endian float32 bytes in base64: what OpenAI and Voyage send for ``base64``."""
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


def estimate_tokens(text: str) -> int:
    """Tokens the emulators charge for a text: the usual ~4 UTF-8 bytes a token, at least 1."""
    return max(1, math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4))


# --- requests and replies -------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""
    time: float = 0.0


@dataclass
class Reply:
    """An HTTP answer: status, JSON-able or raw body, extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        # allow_nan: a NaN fault must reach the client as the bare NaN token Python's json reads.
        return json.dumps(self.body, allow_nan=True).encode("utf-8")


# --- the server ------------------------------------------------------------------------------------


class _Reset(Exception):
    """Raised by a handler to abort the connection with a TCP RST."""


class LoopbackServer:
    """Base of the provider emulators. Use as a context manager or ``start()`` / ``stop()``.

    Args:
        api_key: the key the server accepts.
        latency_ms: added to every answer (for benchmarks).
        rpm / tpm: optional rate limits per minute (429 with ``Retry-After`` beyond them).
        port: 0 for an ephemeral port.
    """

    provider = ""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        latency_ms: float = 0.0,
        rpm: int | None = None,
        tpm: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.latency = latency_ms / 1000.0
        self.limiter = RateLimiter(rpm, tpm) if (rpm or tpm) else None
        self.faults = FaultScript()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's ``base_url`` (overridden per API)."""
        return self.url

    def start(self) -> "LoopbackServer":
        # A short poll interval keeps stop() (which waits for the loop to notice) fast in tests.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        name=f"{self.provider}-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # keep-alive handler threads block on reads: unblock them
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the log ----------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the log and any scripted faults."""
        with self._lock:
            self._requests.clear()
        self.faults.clear()

    def texts_received(self) -> list[str]:
        """Every input text of every request, in order (what the client paid for)."""
        return [t for r in self.requests for t in self.texts_of(r)]

    # -- request flow -------------------------------------------------------------------------------
    def handle(self, req: RecordedRequest) -> Reply:
        """Log, delay, apply a scripted fault, authenticate, rate-limit, then answer."""
        with self._lock:
            self._requests.append(req)
        if self.latency:
            self._stopping.wait(self.latency)
        fault = self.faults.pop()
        if fault is not None:
            if fault.kind == "reset":
                raise _Reset()
            if fault.kind == "hang":
                self._stopping.wait(fault.seconds)
            elif fault.kind == "malformed":
                return Reply(200, b'{"object": "list", "data": [{"embedding": [0.1, ')
            elif fault.kind == "status":
                return self.fault_reply(fault)
        denied = self.authenticate(req)
        if denied is not None:
            return denied
        if self.limiter is not None:
            wait = self.limiter.admit(self.count_tokens(req))
            if wait is not None:
                return self.rate_limit_reply(wait)
        return self.respond(req, fault)

    def fault_reply(self, fault: Fault) -> Reply:
        reply = self.error_reply(fault.status, _DEFAULT_MESSAGES.get(fault.status, "Scripted failure"))
        if fault.body is not None:
            reply.body = fault.body
        reply.headers.update(dict(fault.headers))
        return reply

    def rate_limit_reply(self, wait: float) -> Reply:
        reply = self.error_reply(429, _DEFAULT_MESSAGES[429])
        reply.headers["retry-after"] = str(max(1, math.ceil(wait)))
        return reply

    # -- API hooks ----------------------------------------------------------------------------------
    def authenticate(self, req: RecordedRequest) -> Reply | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def count_tokens(self, req: RecordedRequest) -> int:
        return sum(estimate_tokens(t) for t in self.texts_of(req))

    def texts_of(self, req: RecordedRequest) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def respond(self, req: RecordedRequest, fault: Fault | None) -> Reply:  # pragma: no cover
        raise NotImplementedError

    def error_reply(self, status: int, message: str, **extra: Any) -> Reply:  # pragma: no cover
        raise NotImplementedError


_DEFAULT_MESSAGES = {
    400: "Bad request.",
    401: "Unauthorized.",
    403: "Forbidden.",
    404: "Not found.",
    408: "Request timed out.",
    429: "Rate limit reached. Please try again later.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
    504: "Gateway timeout.",
}


class _Handler(BaseHTTPRequestHandler):
    """One connection: parse, hand to the emulator, write its reply (or reset)."""

    emulator: LoopbackServer  # set per server by _make_handler
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect

    def setup(self) -> None:
        super().setup()
        with self.emulator._lock:
            self.emulator._connections.add(self.connection)

    def finish(self) -> None:
        with self.emulator._lock:
            self.emulator._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests
        pass

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_DELETE = do_POST

    def _serve(self) -> None:
        req = self._record()
        try:
            reply = self.emulator.handle(req)
        except _Reset:
            self._reset()
            return
        body = reply.encoded()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout) before we answered
            self.close_connection = True

    def _record(self) -> RecordedRequest:
        raw = self._read_body()
        parts = urlsplit(self.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return RecordedRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw=raw,
            time=time.monotonic(),
        )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        self.wfile = _NullWriter()


def _make_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"emulator": server})


class _NullWriter:
    closed = False

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


# --- command line ------------------------------------------------------------------------------------


def serve_main(factory: Callable[..., LoopbackServer], argv: Iterable[str] | None = None) -> None:
    """Run an emulator in the foreground until SIGINT/SIGTERM (for benchmarks and manual tries)."""
    parser = argparse.ArgumentParser(description=f"Loopback {factory.__name__} for mrl-retrievers tests.")
    parser.add_argument("--host", default="127.0.0.1", help="only loopback addresses make sense here")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute before 429")
    parser.add_argument("--tpm", type=int, default=None, help="tokens per minute before 429")
    args = parser.parse_args(list(argv) if argv is not None else None)
    server = factory(
        api_key=args.api_key, latency_ms=args.latency_ms, rpm=args.rpm, tpm=args.tpm, host=args.host, port=args.port
    )
    server.start()
    print(f"{server.provider} emulator listening; base_url={server.base_url}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()


__all__ = [
    "FAULT_KINDS", "Fault", "FaultScript", "LoopbackServer", "RateLimiter", "RecordedRequest", "Reply",
    "encode_base64", "estimate_tokens", "mutate_vectors", "serve_main", "text_vector", "text_vectors", "unit",
]
