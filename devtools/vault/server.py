"""HTTP plumbing: the HTTPS vault server, the HTTP token server, and their lifecycle."""

from __future__ import annotations

import json
import re
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from .api import DEFAULT_CHALLENGE_RESOURCE, Request, VaultApi, challenge
from .certs import CertPaths
from .store import DEFAULT_DELETE_LATENCY, DEFAULT_RECOVER_LATENCY, KeyStore
from .throttle import Throttle

TOKEN_PATH = "/metadata/identity/oauth2/token"
TOKEN_LIFETIME = 3600
MAX_BODY = 1 << 20
HANDSHAKE_TIMEOUT = 10
_HOST_HEADER = re.compile(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?")


class TokenIssuer:
    """Hands out opaque bearer tokens and remembers them until they expire (real time, not shifted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def issue(self) -> tuple[str, int]:
        token, expires_on = secrets.token_urlsafe(32), int(time.time()) + TOKEN_LIFETIME
        with self._lock:
            self._expiry[token] = expires_on
        return token, expires_on

    def is_valid(self, token: str) -> bool:
        with self._lock:
            return self._expiry.get(token, 0) > time.time()


class _Handler(BaseHTTPRequestHandler):
    """Shared behaviour: HTTP/1.1 keep-alive, JSON replies, one log line per request."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # closes idle keep-alive connections so their threads end
    # Headers and body go out in separate writes; with Nagle's algorithm the client's delayed ACK
    # then holds every response back by ~40 ms.
    disable_nagle_algorithm = True

    def _split_path(self) -> tuple[str, dict[str, list[str]]]:
        path, _, query = (self.path or "").partition("?")
        return path, parse_qs(query)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdecimal() or int(length) > MAX_BODY or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # a body we do not read cannot be skipped, so end the connection
            return b""
        return self.rfile.read(int(length))

    def _reply(self, status: int, body: dict | None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: object = "-", size: object = "-") -> None:
        # Never the query string or headers: they may carry tokens.
        path = (getattr(self, "path", None) or "").partition("?")[0]
        sys.stderr.write(f"{self.command} {path} {int(code)}\n")

    def log_error(self, format: str, *args: object) -> None:
        if not format.startswith("Request timed out"):  # an idle keep-alive connection ending is routine
            super().log_error(format, *args)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("localvault: " + (format % args) + "\n")


class VaultHandler(_Handler):
    """Each answer says how long the vault spent on it, from its request line to its reply, in a
    Server-Timing header (``vault;dur=<ms>``): what a benchmark subtracts to find the client's share."""

    server: VaultServer

    def parse_request(self) -> bool:
        self._started = time.perf_counter()
        return super().parse_request()

    def _dispatch(self) -> None:
        path, query = self._split_path()
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.fullmatch(host):
            host = f"localhost:{self.server.server_port}"
        request = Request(
            method=self.command,
            path=path,
            query=query,
            body=self._read_body(),
            base_url=f"https://{host}",
            authorization=self.headers.get("Authorization"),
        )
        status, body, headers = self.server.api.handle(request)
        headers["Server-Timing"] = f"vault;dur={(time.perf_counter() - self._started) * 1000:.3f}"
        self._reply(status, body, headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class TokenHandler(_Handler):
    """A managed-identity endpoint in the App Service (X-IDENTITY-HEADER) and IMDS (Metadata: true) styles."""

    server: TokenServer

    def do_GET(self) -> None:
        self._read_body()  # keeps a keep-alive connection in step even if a client sends one
        path, query = self._split_path()
        resource = (query.get("resource") or [""])[0]
        if path != TOKEN_PATH:
            self._reply(404, {"error": "not_found", "error_description": f"No route for {path}."})
        elif not resource:
            self._reply(400, {"error": "invalid_request", "error_description": "Parameter 'resource' is required."})
        else:
            token, expires_on = self.server.tokens.issue()
            self._reply(
                200,
                {
                    "access_token": token,
                    "expires_on": str(expires_on),
                    "expires_in": str(TOKEN_LIFETIME),
                    "resource": resource,
                    "token_type": "Bearer",
                },
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the default of 5 resets connections when many clients connect at once

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall startup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class TokenServer(_Server):
    def __init__(self, host: str, port: int, tokens: TokenIssuer) -> None:
        self.tokens = tokens
        super().__init__(host, port, TokenHandler)


class VaultServer(_Server):
    """HTTPS; the TLS handshake runs in the connection's own thread so a slow client cannot block accept()."""

    def __init__(self, host: str, port: int, api: VaultApi, certs: CertPaths) -> None:
        self.api = api
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls.load_cert_chain(certs.cert, certs.key)
        super().__init__(host, port, VaultHandler)

    def finish_request(self, request: socket.socket, client_address: object) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            connection = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            sys.stderr.write(f"localvault: TLS handshake failed: {error}\n")
            return
        with connection:
            self.RequestHandlerClass(connection, client_address, self)


class LocalVault:
    """Both servers, bound on construction (so ports are known) and served from background threads.

    ``challenge_resource`` is the resource the vault's 401 challenge names; "{port}" in it stands for
    the vault's port (which may be chosen only when it binds). ``sign_latency_ms`` holds each
    signature back that long (see VaultApi); ``delete_latency_ms`` and ``recover_latency_ms`` are how
    long a deletion and a recovery take to take effect (see KeyStore); ``sku`` is "premium" (HSM-protected
    keys allowed) or "standard" (see VaultApi). ``throttle_scale``, when given, holds the vault to Key
    Vault's service limits times that scale (see Throttle); None never throttles.
    ``empty_version_sign`` False answers a sign by the empty version with 404, as Lowkey Vault does.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token_port: int,
        certs: CertPaths,
        challenge_resource: str = DEFAULT_CHALLENGE_RESOURCE,
        sign_latency_ms: float = 0.0,
        delete_latency_ms: float = DEFAULT_DELETE_LATENCY * 1000,
        recover_latency_ms: float = DEFAULT_RECOVER_LATENCY * 1000,
        sku: str = "premium",
        throttle_scale: float | None = None,
        empty_version_sign: bool = True,
    ) -> None:
        tokens = TokenIssuer()
        store = KeyStore(delete_latency=delete_latency_ms / 1000, recover_latency=recover_latency_ms / 1000)
        throttle = None if throttle_scale is None else Throttle(throttle_scale)
        api = VaultApi(
            store,
            tokens.is_valid,
            sign_latency_ms / 1000,
            premium=sku == "premium",
            throttle=throttle,
            empty_version_sign=empty_version_sign,
        )
        self.vault = VaultServer(host, port, api, certs)
        api.challenge = challenge(challenge_resource.replace("{port}", str(self.vault.server_port)))
        self.token = TokenServer(host, token_port, tokens)
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.vault, self.token)]

    @property
    def vault_url(self) -> str:
        return f"https://localhost:{self.vault.server_port}"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.token.server_port}{TOKEN_PATH}"

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for server in (self.vault, self.token):
            server.shutdown()
            server.server_close()
