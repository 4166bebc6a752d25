"""A fault-injecting HTTP/1.1 proxy for integration tests.

It sits between the app's Azure SDK clients and a stand-in (localvault, Azurite) so a test can make
the service misbehave over a real network connection: answer 429/503 without forwarding, reset the
connection, or hold a request past the client's read timeout. It runs in-process on background
threads; ``stop()`` refuses new connections and ``start()`` listens again on the same port, so a
client configured with ``proxy.url`` sees an outage and a recovery.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit

from devtools.vault.certs import ensure_certificates

# Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1); we always send Content-Length.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}
MAX_LINE = 65536
UPSTREAM_TIMEOUT_SECONDS = 30.0
JOIN_TIMEOUT_SECONDS = 5.0

Headers = list[tuple[str, str]]


def make_server_certificate(directory: str | Path) -> tuple[str, str, str]:
    """A certificate for localhost/127.0.0.1 and its key, signed by a test CA: (cert, key, ca) PEM paths."""
    paths = ensure_certificates(Path(directory))  # the same private-CA scheme localvault uses
    return str(paths.cert), str(paths.key), str(paths.ca)


@dataclass
class _Fault:
    kind: str  # "respond", "reset" or "stall"
    remaining: int | None  # None: until cleared
    method: str | None
    path: re.Pattern[str] | None
    status: int = 0
    headers: dict[str, str] | None = None
    body: bytes = b""
    seconds: float = 0.0

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method == method.upper()) and (self.path is None or bool(self.path.search(target)))


class FaultProxy:
    """Forward each request to ``upstream`` unless a queued fault matches it first."""

    def __init__(
        self,
        upstream: str,
        ca_bundle: str | None = None,
        tls: tuple[str, str] | None = None,
        rewrite_body_urls: bool = False,
        upstream_timeout: float = UPSTREAM_TIMEOUT_SECONDS,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL: {upstream!r}")
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self._upstream_netloc = parts.netloc  # the Host header a direct client would send
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._upstream_tls = ssl.create_default_context(cafile=ca_bundle) if parts.scheme == "https" else None
        self._upstream_timeout = upstream_timeout
        self._server_tls: ssl.SSLContext | None = None
        if tls is not None:
            self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._server_tls.load_cert_chain(*tls)
        self.rewrite_body_urls = rewrite_body_urls

        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._received: list[tuple[str, str, dict[str, str]]] = []
        self._faults_injected = 0
        self._connections = 0
        self._port = 0  # chosen by the OS on the first start, then kept
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._clients: set[socket.socket] = set()

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FaultProxy has not been started")
        # The test CA's certificate names localhost; plain http uses the address we listen on.
        return f"https://localhost:{self._port}" if self._server_tls else f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> FaultProxy:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Rebinding the same port must work even with our closed connections in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(64)
        listener.settimeout(0.1)  # accept() polls so stop() never depends on closing a blocked socket
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, args=(listener, self._stopping), name="faultproxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every client connection; pending stalls end now."""
        if self._listener is None:
            return
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT_SECONDS)  # first, so no connection arrives after the sweep below
        self._listener.close()
        self._listener = None
        with self._lock:
            clients, threads = list(self._clients), list(self._threads)
            self._clients.clear()
            self._threads.clear()
        for client in clients:
            _shutdown(client)
        for thread in threads:
            thread.join(JOIN_TIMEOUT_SECONDS)

    close = stop

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- faults ----------------------------------------------------------------------------

    def respond(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with this response instead of forwarding them."""
        self._add(_Fault("respond", times, *_filters(method, path), status=status, headers=dict(headers or {}), body=body))

    def reset(self, times: int | None = 1, method: str | None = None, path: str | None = None) -> None:
        """Close the client connection of the next ``times`` matching requests with a TCP reset."""
        self._add(_Fault("reset", times, *_filters(method, path)))

    def stall(self, seconds: float, times: int | None = 1, method: str | None = None, path: str | None = None) -> None:
        """Hold the next ``times`` matching requests unanswered for ``seconds`` (or until stop), then close."""
        self._add(_Fault("stall", times, *_filters(method, path), seconds=seconds))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def received(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, request target, headers with lower-case names) of every request received, faulted or not; a copy."""
        with self._lock:
            return [(method, target, dict(fields)) for method, target, fields in self._received]

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, request target) of every request received, faulted or not; a snapshot copy."""
        with self._lock:
            return [(method, target) for method, target, _ in self._received]

    @property
    def faults_injected(self) -> int:
        with self._lock:
            return self._faults_injected

    @property
    def connections(self) -> int:
        """Client connections accepted so far: shows whether clients reuse them (keep-alive)."""
        with self._lock:
            return self._connections

    def _add(self, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("times must be at least 1, or None for until cleared")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, target: str, fields: dict[str, str]) -> _Fault | None:
        """Log the request and consume one use of the first matching fault, in the order they were added."""
        with self._lock:
            self._received.append((method, target, fields))
            for fault in self._faults:
                if fault.matches(method, target):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    self._faults_injected += 1
                    return fault
        return None

    # ---- connections -----------------------------------------------------------------------

    def _spawn(self, client: socket.socket, stopping: threading.Event) -> None:
        thread = threading.Thread(target=self._serve, args=(client, stopping), name="faultproxy-conn", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self, listener: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._clients.add(client)
                self._connections += 1
            self._spawn(client, stopping)

    def _serve(self, client: socket.socket, stopping: threading.Event) -> None:
        conn = client
        try:
            if self._server_tls is not None:
                conn = self._server_tls.wrap_socket(client, server_side=True)  # handshake in this thread
                with self._lock:
                    self._clients.discard(client)
                    self._clients.add(conn)
                if stopping.is_set():
                    return  # stop() may have swept the connections before the swap above
            rfile = conn.makefile("rb")
            try:
                while not stopping.is_set() and self._handle_one(conn, rfile, stopping):
                    pass
            finally:
                rfile.close()
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the client went away, sent garbage, or stop() shut the socket
        finally:
            with self._lock:
                self._clients.discard(conn)
                self._clients.discard(client)
            conn.close()

    def _handle_one(self, conn: socket.socket, rfile: BinaryIO, stopping: threading.Event) -> bool:
        """Read one request and answer it; False when the connection should end."""
        line = rfile.readline(MAX_LINE)
        if not line.strip():
            return False  # EOF (a blank line between requests is also treated as the end)
        method, target, version = line.decode("latin-1").split()
        headers = _read_headers(rfile)
        fields = {name.lower(): value for name, value in headers}
        if fields.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _read_body(rfile, fields)
        connection = fields.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"

        fault = self._take_fault(method, target, fields)
        if fault is not None and fault.kind == "reset":
            # SO_LINGER 0 makes close() send RST, so the client sees "connection reset by peer".
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if fault is not None and fault.kind == "stall":
            stopping.wait(fault.seconds)
            return False
        if fault is not None:
            status, reason = fault.status, _reason(fault.status)
            out_headers, out_body = list((fault.headers or {}).items()), fault.body
        else:
            status, reason, out_headers, out_body = self._forward(method, target, headers, body)
        _send(conn, status, reason, out_headers, out_body, keep_alive, head=method.upper() == "HEAD")
        return keep_alive

    def _forward(self, method: str, target: str, headers: Headers, body: bytes | None) -> tuple[int, str, Headers, bytes]:
        """One upstream request per client request: simple, and keeps faults per request."""
        if self._upstream_tls is not None:
            upstream: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._upstream_host, self._upstream_port, timeout=self._upstream_timeout, context=self._upstream_tls
            )
        else:
            upstream = http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=self._upstream_timeout)
        try:
            upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            upstream.putheader("Host", self._upstream_netloc)
            for name, value in _end_to_end(headers):
                if name.lower() == "host" or (self.rewrite_body_urls and name.lower() == "accept-encoding"):
                    continue  # a compressed body could not be rewritten
                upstream.putheader(name, value)
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))  # also 0: shared-key signatures cover it
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
            out = _end_to_end(response.getheaders())
            if method.upper() == "HEAD" and response.getheader("Content-Length") is not None:
                out.append(("Content-Length", response.getheader("Content-Length", "")))  # the size of what GET would return
            if self.rewrite_body_urls and data:
                data = data.replace(self.upstream.encode(), self.url.encode())
            return response.status, response.reason, out, data
        except (OSError, http.client.HTTPException) as error:
            return 502, "Bad Gateway", [("Content-Type", "text/plain")], f"upstream failed: {error!r}".encode()
        finally:
            upstream.close()


def _filters(method: str | None, path: str | None) -> tuple[str | None, re.Pattern[str] | None]:
    """The method compares case-insensitively; the path regex is searched in the target, query included."""
    return (method.upper() if method else None), (re.compile(path) if path is not None else None)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Fault"


def _read_headers(rfile: BinaryIO) -> Headers:
    headers: Headers = []
    while True:
        line = rfile.readline(MAX_LINE).decode("latin-1")
        if line in ("\r\n", "\n", ""):
            return headers
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))


def _read_body(rfile: BinaryIO, fields: dict[str, str]) -> bytes | None:
    """The request body, or None when the request announced none."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int(rfile.readline(MAX_LINE).split(b";")[0], 16)
            if size == 0:
                while rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers, dropped
                return b"".join(chunks)
            chunks.append(rfile.read(size + 2)[:size])  # each chunk ends with CRLF
    if "content-length" in fields:
        length = int(fields["content-length"])
        data = rfile.read(length)
        if len(data) != length:
            raise ValueError("request body cut short")
        return data
    return None


def _end_to_end(headers: Headers) -> Headers:
    """Headers without hop-by-hop ones (including those the Connection header names) and Content-Length."""
    named = {token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")}
    drop = HOP_BY_HOP | named | {"content-length"}
    return [(name, value) for name, value in headers if name.lower() not in drop]


def _send(conn: socket.socket, status: int, reason: str, headers: Headers, body: bytes, keep_alive: bool, head: bool) -> None:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    if not head:  # a HEAD answer keeps the upstream's headers but has no body to measure
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body))


def _shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked reading ``sock``. The base-class call bypasses SSLSocket.shutdown, which
    would tear down TLS state another thread is still using."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
