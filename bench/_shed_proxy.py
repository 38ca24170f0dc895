"""A load-shedding front for the team-server benchmark (``bench/team_server.py --shed N``).

A team server is often behind a proxy that refuses work once the server is saturated
(nginx's ``limit_conn`` / ``limit_req``, a cloud load balancer): the client gets 429 or
503 with ``Retry-After`` instead of a slower answer. MLflow's server never does that on
its own, so this proxy does it in front of one: it forwards every request to the server
while at most ``limit`` are in flight, and answers the others at once with ``status``
and ``Retry-After``, without forwarding them. Both benchmark sides then have to retry:
MLflow's client with its urllib3 retry policy, tracksdk's sender with its own.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}


class SheddingProxy:
    """Forward to ``127.0.0.1:upstream_port``; shed what is over ``limit`` in flight.

    Attributes:
        url: ``http://127.0.0.1:<port>``, to use as the tracking URI.
        counts: Answers by status (forwarded and shed), since the last :meth:`reset`.
    """

    def __init__(
        self, upstream_port: int, limit: int, *, status: int = 429, retry_after: str = "1"
    ) -> None:
        self.upstream_port = upstream_port
        self.limit = limit
        self.status = status
        self.retry_after = retry_after
        self.counts: dict[int, int] = {}
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._upstreams: list[http.client.HTTPConnection] = []
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            upstreams, self._upstreams = self._upstreams, []
        for conn in upstreams:
            conn.close()

    def reset(self) -> dict[int, int]:
        """The counts so far, then zero."""
        with self._lock:
            counts, self.counts = self.counts, {}
        return counts

    def _count(self, status: int) -> None:
        with self._lock:
            self.counts[status] = self.counts.get(status, 0) + 1

    def _upstream(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=600)
            self._local.conn = conn
            with self._lock:
                self._upstreams.append(conn)
        return conn


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: SheddingProxy) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # counted in SheddingProxy.counts instead

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        owner = self.server.owner
        body = self._body()
        if not owner._slots.acquire(blocking=False):
            data = json.dumps(
                {"error_code": "RESOURCE_EXHAUSTED", "message": "server busy, retry later"}
            ).encode()
            owner._count(owner.status)
            self._answer(owner.status, data, [("Retry-After", owner.retry_after)])
            return
        try:
            status, data, headers = self._forward(body)
        finally:
            owner._slots.release()
        owner._count(status)
        self._answer(status, data, headers)

    def _forward(self, body: bytes) -> tuple[int, bytes, list[tuple[str, str]]]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):  # a kept-alive upstream connection the server closed
            conn = self.server.owner._upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                if attempt:
                    raise
                continue
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, data, kept
        raise AssertionError("unreachable")

    def _answer(self, status: int, data: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        if not any(k.lower() == "content-type" for k, _ in headers):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
