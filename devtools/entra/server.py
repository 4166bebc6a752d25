"""Sockets and threads: Entra's endpoints over HTTPS, the managed-identity endpoint over plain HTTP.

Both listen on 127.0.0.1 only. Each request is logged as one line (method, path without its query,
status): queries, headers and bodies may carry secrets and tokens, so none of them is ever logged.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from devtools.vault.certs import CertPaths

from . import cluster, msi
from .directory import Directory
from .endpoints import EntraEndpoints, Request, Response

HOST = "127.0.0.1"
IDENTITY_HEADER_FILE = "identity-header"
MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, JSON answers, one log line per request; ``server.answer`` decides what to say."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # ends idle keep-alive connections, and so their threads
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would hold the body back
    server: _Server

    def _serve(self) -> None:
        path, _, query = (self.path or "").partition("?")
        body = self._body()
        request = Request(
            method=self.command,
            path=path,
            query=_first_values(query),
            form=_first_values(body.decode("utf-8", "replace"))
            if self.headers.get_content_type() == "application/x-www-form-urlencoded"
            else {},
            body=body,
            client_request_id=self.headers.get("client-request-id"),
            identity_header=self.headers.get("X-IDENTITY-HEADER"),
            from_loopback=ipaddress.ip_address(self.client_address[0]).is_loopback,
        )
        status, payload, headers = self.server.answer(request)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdecimal() or int(length) > MAX_BODY or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # an unread body cannot be skipped, so the connection ends with this answer
            return b""
        return self.rfile.read(int(length))

    def log_request(self, code: object = "-", size: object = "-") -> None:
        sys.stderr.write(f"{self.command} {(self.path or '').partition('?')[0]} {int(code)}\n")

    def log_message(self, format: str, *args: object) -> None:
        if format.startswith("Request timed out"):  # an idle keep-alive connection ending is routine
            return
        # An error's arguments may quote the request line: never its query.
        args = tuple(arg.partition("?")[0] if isinstance(arg, str) else arg for arg in args)
        sys.stderr.write("localentra: " + (format % args) + "\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the default of 5 resets connections when many clients connect at once

    def __init__(self, port: int, answer: Callable[[Request], Response], tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        super().__init__((HOST, port), _Handler)
        if tls is not None:
            # The handshake waits for the connection's first read, in its own thread, so that a slow client
            # cannot hold up accept(); the handler's timeout bounds it.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's name (getfqdn), which can stall a start.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: object, client_address: tuple) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError)):  # a client's failed handshake or hang-up, not ours
            sys.stderr.write(f"localentra: connection from {client_address[0]} failed: {error}\n")
        else:
            super().handle_error(request, client_address)


class LocalEntra:
    """Both servers, bound on construction (so their ports are known) and served from background threads.

    The managed-identity secret (what App Service injects as IDENTITY_HEADER) is new at each start and
    written to ``<state_dir>/identity-header`` for the starter to read.
    """

    def __init__(self, port: int, msi_port: int, state_dir: Path, certs: CertPaths) -> None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(certs.cert, certs.key)
        self.https = _Server(port, lambda request: self.endpoints.handle(request), tls)
        self.authority = f"https://{HOST}:{self.https.server_port}"
        self.directory = Directory(state_dir, cluster.issuer_url(self.authority))
        self.endpoints = EntraEndpoints(self.directory, self.authority)
        identity_header = secrets.token_urlsafe(32)
        _write_private(state_dir / IDENTITY_HEADER_FILE, identity_header)
        self.managed_identity = msi.ManagedIdentityEndpoint(self.directory, self.endpoints.tokens, identity_header)
        self.http = _Server(msi_port, self.managed_identity.handle)

    @property
    def msi_endpoint(self) -> str:
        return f"http://{HOST}:{self.http.server_port}{msi.PATH}"

    def start(self) -> None:
        for server in (self.https, self.http):
            threading.Thread(target=server.serve_forever, name=f"localentra-{server.server_port}", daemon=True).start()

    def stop(self) -> None:
        for server in (self.https, self.http):
            server.shutdown()
            server.server_close()


def _first_values(query: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(query, keep_blank_values=True).items()}


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by its owner only (a file left from before may be wider)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    temporary.touch(mode=0o600)
    temporary.write_text(text)
    temporary.replace(path)
