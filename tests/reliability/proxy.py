"""A loopback HTTP proxy in front of the local stack that can be switched, per request, to pass,
hold (until released) or drop requests, or to go down altogether.

It works at the HTTP level (one request read whole, forwarded with http.client, the answer copied
back) so that a rule can look at the AWS action: SQS's JSON protocol names it in X-Amz-Target
(`AmazonSQS.SendMessageBatch`), SES v2 in the path (`/v2/email/outbound-emails`). No product code
knows it is there: the process under test is simply given the proxy's address as its endpoint.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PASS, HOLD, DROP = "pass", "hold", "drop"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    target: str  # X-Amz-Target, or "" (SES v2, S3: look at the path)

    @property
    def action(self) -> str:
        if self.target:
            return self.target.rsplit(".", 1)[-1]
        if self.path.startswith("/v2/email/outbound-emails"):
            return "SendEmail"
        return f"{self.method} {self.path.split('?', 1)[0]}"


class FaultProxy:
    """`rule(request, count)` decides PASS, HOLD or DROP; `count` is how many requests with the
    same action came before (0-based). `down` drops every request (the connection is reset)."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rule: Callable[[Request, int], str] = lambda request, count: PASS
        self.down = False
        # Seconds to sit on upstream's answer before passing it back (the request did reach it).
        self.answer_delay: Callable[[Request], float] = lambda request: 0.0
        self.counts: dict[str, int] = {}
        self.passed: dict[str, int] = {}
        self.held: list[Request] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._forward_held = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, self.headers.get("X-Amz-Target", ""))
                decision = proxy._decide(request)
                if decision == HOLD:
                    with proxy._lock:
                        proxy.held.append(request)
                    proxy._release.wait()
                    decision = PASS if proxy._forward_held else DROP
                if decision == DROP or proxy.down:
                    self._reset()
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection", "keep-alive"}}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                with proxy._lock:
                    proxy.passed[request.action] = proxy.passed.get(request.action, 0) + 1
                delay = proxy.answer_delay(request)
                if delay:
                    threading.Event().wait(delay)
                self.send_response_only(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in {"transfer-encoding", "connection", "content-length", "keep-alive"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _reset(self) -> None:
                # An abrupt close (RST): what a client sees when a host or a link dies.
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def _decide(self, request: Request) -> str:
        if self.down:
            return DROP
        with self._lock:
            count = self.counts.get(request.action, 0)
            self.counts[request.action] = count + 1
        return self.rule(request, count)

    def hold_after(self, action: str, passing: int) -> None:
        """Let `passing` requests of `action` through (counting from now), then hold every later one."""
        self._release.clear()
        self.counts = {}
        self.held = []
        self.rule = lambda request, count: HOLD if request.action == action and count >= passing else PASS

    def drop_after(self, action: str, passing: int) -> None:
        """Let `passing` requests of `action` through (counting from now), then go down for everything."""
        self.counts = {}

        def rule(request: Request, count: int) -> str:
            if request.action == action and count >= passing:
                self.down = True
                return DROP
            return PASS

        self.rule = rule

    def refuse(self, action: str) -> None:
        """Drop every request of `action` (each retry too); everything else passes."""
        self.rule = lambda request, count: DROP if request.action == action else PASS

    def release(self, forward: bool) -> None:
        """Let held requests go: forwarded upstream (they reach AWS) or dropped (they never do)."""
        self._forward_held = forward
        self.rule = lambda request, count: PASS
        self._release.set()

    def heal(self) -> None:
        self.down = False
        self.rule = lambda request, count: PASS
        self._forward_held = True
        self._release.set()

    def close(self) -> None:
        self.heal()
        self._server.shutdown()
        self._server.server_close()
