"""Key Vault's HTTP transport: the Azure SDK's pipeline over kept-alive http.client connections.

The SDK's default transport sends through requests, whose own per-request work (merging session
settings, preparing the URL, hooks, cookies, wrapping the response) was about a third of a sign's
client-side time. Key Vault calls are small JSON requests to one host, read whole; so the pipeline
(authentication, retries, logging) stays the SDK's, and only its last step, sending the bytes, is
the app's: a small pool of http.client connections, with the TLS and proxy settings requests would use.

Measured against localvault signing in 3.6 ms (the mint benchmark's slow vault), a key manager's
sign_data took a median 6.0-6.2 ms over urllib3's pool and 6.8-7.1 ms on azure-core's RequestsTransport
(a requests session pooling 32 connections), in 60-100 interleaved rounds. urllib3's own work (its
pool manager, its response object, the headers and the body sent apart) then still took 0.2-0.5 ms
of a sign beyond a bare http.client request on a kept-alive connection, which this transport now is.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import ssl
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_auth_from_url

# The Functions worker runs at most 32 sync invocations at once; each may hold one connection.
POOL_SIZE = 32


class Proxy(NamedTuple):
    """An HTTP proxy that tunnels to the vault (CONNECT), and the headers that go to it alone."""

    host: str
    port: int
    headers: dict[str, str]


class PooledTransport(HttpTransport):  # type: ignore[type-arg]  # azure-core types it by request and response
    """Sends a pipeline's requests on kept-alive connections and answers with fully read responses.

    ``verify`` is True (the CA bundle requests trusts), or the path of a CA bundle file or directory;
    ``proxy`` is the URL of an http:// proxy for the vault, credentials included, or None.
    """

    def __init__(self, *, verify: bool | str, connection_timeout: float, read_timeout: float, proxy: str | None = None) -> None:
        ca = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
        if not isinstance(ca, str):
            raise ValueError("the Key Vault transport always verifies TLS: give True or a CA bundle path")
        self.ca = ca
        self.connection_timeout, self.read_timeout = connection_timeout, read_timeout
        self.proxy = _proxy(proxy) if proxy is not None else None
        self._tls: ssl.SSLContext | None = None  # read from the CA bundle at the first connection
        self._idle: dict[tuple[str, int], list[http.client.HTTPSConnection]] = {}
        self._lock = threading.Lock()

    def send(
        self,
        request: HttpRequest,
        *,
        stream: bool = False,
        connection_timeout: float | None = None,
        read_timeout: float | None = None,
        **unsupported: Any,
    ) -> HttpResponse:
        if stream:
            raise ValueError("the Key Vault transport reads answers whole: stream=True is not supported")
        if unsupported:
            raise ValueError(f"the Key Vault transport takes no per-request {', '.join(sorted(unsupported))}")
        if not isinstance(request, HttpRequest):
            raise TypeError("the Key Vault transport sends azure.core.rest requests only")
        url = urlsplit(request.url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError("the Key Vault transport sends to https:// URLs only")
        origin = (url.hostname, url.port or http.client.HTTPS_PORT)
        connection = self._idle_connection(origin) or self._connect(origin, connection_timeout or self.connection_timeout)
        try:
            assert connection.sock is not None  # connected
            connection.sock.settimeout(read_timeout or self.read_timeout)
            # http.client sends the headers and a bytes body in one write.
            connection.request(
                request.method, f"{url.path or '/'}?{url.query}" if url.query else url.path or "/", _body(request), dict(request.headers)
            )
            answer = connection.getresponse()
            content = answer.read()
        except TimeoutError as error:
            connection.close()
            raise ServiceResponseTimeoutError(error, error=error) from error
        except (OSError, http.client.HTTPException) as error:  # the connection broke once the request was on its way
            connection.close()
            raise ServiceResponseError(error, error=error) from error
        if answer.will_close:
            connection.close()
        else:
            self._keep(origin, connection)
        return ReadResponse(request, answer.status, answer.reason or "", _headers(answer), content)

    def _idle_connection(self, origin: tuple[str, int]) -> http.client.HTTPSConnection | None:
        """The connection last put back, unless the server has closed it (or sent unasked bytes) since."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    return None
                connection = idle.pop()
            if connection.sock is not None and not _readable(connection.sock):
                return connection
            connection.close()

    def _keep(self, origin: tuple[str, int], connection: http.client.HTTPSConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < POOL_SIZE:
                idle.append(connection)
                return
        connection.close()

    def _connect(self, origin: tuple[str, int], timeout: float) -> http.client.HTTPSConnection:
        host, port = origin
        try:
            if self.proxy is None:
                connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls_context())
            else:
                connection = http.client.HTTPSConnection(self.proxy.host, self.proxy.port, timeout=timeout, context=self._tls_context())
                connection.set_tunnel(host, port, self.proxy.headers)
            connection.connect()
        except TimeoutError as error:
            raise ServiceRequestTimeoutError(error, error=error) from error
        except (OSError, http.client.HTTPException) as error:  # refused, unresolved, TLS refused, the proxy's CONNECT refused
            raise ServiceRequestError(error, error=error) from error
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the certificate and the host name are checked
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            if os.path.isdir(self.ca):
                tls.load_verify_locations(capath=self.ca)
            else:
                tls.load_verify_locations(cafile=self.ca)
            self._tls = tls
        return self._tls

    def open(self) -> None:
        """Connections open as requests need them."""

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connection in (connection for connections in idle.values() for connection in connections):
            connection.close()

    def __exit__(self, *exc_details: object) -> None:
        self.close()


def _readable(sock: Any) -> bool:
    """Whether a kept-alive connection has something to read before its next request: the server's close."""
    poller = select.poll()  # not select.select, which fails on descriptors past 1023
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _proxy(url: str) -> Proxy:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("the Key Vault transport takes an http:// proxy, which tunnels TLS to the vault")
    user, password = get_auth_from_url(url)  # unquoted, as requests sends them
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return Proxy(parts.hostname, parts.port or 80, {"Proxy-Authorization": f"Basic {credentials}"} if user or password else {})


def _headers(answer: http.client.HTTPResponse) -> CaseInsensitiveDict:
    """The answer's headers, a repeated one's values joined with ", " as requests and urllib3 join them."""
    headers = CaseInsensitiveDict()
    for name, value in answer.getheaders():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _body(request: HttpRequest) -> bytes | None:
    content = request.content
    if content is None or isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    raise ValueError("the Key Vault transport sends JSON or byte bodies only")


class ReadResponse(HttpResponse):
    """An HTTP response read whole, as azure.core.rest describes one."""

    def __init__(self, request: HttpRequest, status: int, reason: str, headers: CaseInsensitiveDict, content: bytes) -> None:
        self._request, self._status, self._reason, self._headers, self._content = request, status, reason, headers, content
        self._encoding: str | None = None

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def headers(self) -> CaseInsensitiveDict:
        return self._headers

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def content_type(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def is_closed(self) -> bool:
        return True

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        if self._encoding is None:
            _, _, charset = (self.content_type or "").partition("charset=")
            self._encoding = charset.split(";")[0].strip().strip('"') or None
        return self._encoding

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        # JSON's own default (RFC 8259), and a BOM tolerated as requests does.
        return self._content.decode(encoding or self.encoding or "utf-8-sig")

    def json(self) -> Any:
        if not self._content:
            raise ValueError("the response has no body")
        return json.loads(self.text())

    def raise_for_status(self) -> None:
        if self._status >= 400:
            raise HttpResponseError(response=self)

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def close(self) -> None:
        """Nothing is held: the connection went back to the pool once the body was read."""

    def __enter__(self) -> ReadResponse:
        return self

    def __exit__(self, *exc_details: object) -> None:
        self.close()
