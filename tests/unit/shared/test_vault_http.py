"""The Key Vault transport against a small local HTTPS server: reuse, errors as the SDK names them, TLS, proxies."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest

from devtools.vault.certs import ensure_certificates
from shared.vault_http import PooledTransport, ReadResponse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, dict(self.headers), body))
        if self.path == "/hang":
            time.sleep(1)
        if self.path == "/cut":  # promises a body, sends half of it, closes
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"half":')
            self.close_connection = True
            return
        self.close_connection = self.path == "/drop"  # without saying so: the client finds out on reuse
        status = 404 if self.path == "/missing" else 200
        answer = json.dumps({"error": {"code": "KeyNotFound", "message": "no such key"}} if status == 404 else {"echo": body.decode()})
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for value in ("first", "second"):
            self.send_header("X-Repeated", value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.context, self.received, self.connections = context, [], 0

    def get_request(self):
        raw, address = self.socket.accept()
        self.connections += 1
        return self.context.wrap_socket(raw, server_side=True), address


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return ensure_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(certificates):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    with CountingServer(context) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server
        server.shutdown()


def url(server, path: str) -> str:
    return f"https://localhost:{server.server_address[1]}{path}"


def transport(certificates, read_timeout: float = 5) -> PooledTransport:
    return PooledTransport(verify=str(certificates.ca), connection_timeout=2, read_timeout=read_timeout)


def test_requests_share_one_kept_alive_connection_and_answers_are_read_whole(server, certificates):
    sender = transport(certificates)
    answers = [sender.send(HttpRequest("POST", url(server, "/sign"), json={"n": n})) for n in range(3)]
    assert server.connections == 1
    assert [answer.json() for answer in answers] == [{"echo": json.dumps({"n": n})} for n in range(3)]
    first = answers[0]
    assert isinstance(first, ReadResponse) and first.status_code == 200 and first.is_stream_consumed
    assert first.headers["content-type"] == "application/json; charset=utf-8" and first.encoding == "utf-8"
    assert first.headers["x-repeated"] == "first, second"  # joined, as http.client and requests do
    assert first.read() == first.content == b"".join(first.iter_bytes())
    path, headers, body = server.received[0]
    assert headers["Content-Type"] == "application/json" and body == b'{"n": 0}'


def test_through_a_pipeline_errors_are_the_sdks(server, certificates):
    client = PipelineClient(url(server, ""), transport=transport(certificates, read_timeout=0.3), policies=[RetryPolicy(retry_total=0)])
    with pytest.raises(ServiceResponseTimeoutError):
        client.send_request(HttpRequest("POST", url(server, "/hang")))
    with pytest.raises(ServiceResponseError):
        client.send_request(HttpRequest("POST", url(server, "/cut")))


def test_a_404_is_an_http_response_error_with_the_services_message(server, certificates):
    answer = transport(certificates).send(HttpRequest("POST", url(server, "/missing")))
    with pytest.raises(HttpResponseError, match="no such key"):
        answer.raise_for_status()


def test_a_connection_the_server_dropped_silently_is_replaced_not_failed(server, certificates):
    sender = transport(certificates)
    assert sender.send(HttpRequest("POST", url(server, "/drop"))).status_code == 200
    assert sender.send(HttpRequest("POST", url(server, "/sign"))).status_code == 200
    assert server.connections == 2


def test_a_refused_connection_and_an_untrusted_server_are_service_request_errors(server, certificates, tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ServiceRequestError):
        transport(certificates).send(HttpRequest("POST", f"https://localhost:{port}/sign"))
    stranger = ensure_certificates(tmp_path / "another-ca")  # a CA the server's certificate was not issued by
    with pytest.raises(ServiceRequestError):
        PooledTransport(verify=str(stranger.ca), connection_timeout=2, read_timeout=2).send(HttpRequest("POST", url(server, "/sign")))
    assert server.received == []


def test_a_proxy_and_its_credentials_come_from_its_url():
    plain = PooledTransport(verify=True, connection_timeout=1, read_timeout=1)
    proxied = PooledTransport(verify=True, connection_timeout=1, read_timeout=1, proxy="http://user:p%40ss@proxy.example:3128")
    assert plain.proxy is None
    assert proxied.proxy is not None and (proxied.proxy.host, proxied.proxy.port) == ("proxy.example", 3128)
    assert proxied.proxy.headers == {
        "Proxy-Authorization": "Basic " + base64.b64encode(b"user:p@ss").decode()
    }  # unquoted, as requests does


def test_what_it_cannot_do_is_refused_not_ignored(server, certificates):
    sender = transport(certificates)
    with pytest.raises(ValueError):
        sender.send(HttpRequest("POST", url(server, "/sign")), stream=True)
    with pytest.raises(ValueError):
        sender.send(HttpRequest("POST", url(server, "/sign")), connection_verify=False)
    with pytest.raises(ValueError):
        PooledTransport(verify=False, connection_timeout=1, read_timeout=1)
    with pytest.raises(ValueError, match="http:// proxy"):  # TLS to the proxy, then to the vault inside it, is not supported
        PooledTransport(verify=True, connection_timeout=1, read_timeout=1, proxy="https://proxy.example:3128")
    assert server.received == []


class TunnelingProxy(ThreadingHTTPServer):
    """An HTTP proxy that answers CONNECT only, records what it was asked, and relays the bytes both ways."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TunnelHandler)
        self.asked: list[tuple[str, str | None]] = []


class TunnelHandler(BaseHTTPRequestHandler):
    def do_CONNECT(self):
        self.server.asked.append((self.path, self.headers.get("Proxy-Authorization")))
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        threading.Thread(target=_relay, args=(upstream, self.connection), daemon=True).start()
        _relay(self.connection, upstream)
        self.close_connection = True

    def log_message(self, *args):
        pass


def _relay(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        target.close()


def test_through_a_proxy_requests_go_in_a_tls_tunnel_to_the_vault_with_the_proxys_credentials(server, certificates):
    with TunnelingProxy() as proxy:
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        proxy_url = f"http://user:p%40ss@127.0.0.1:{proxy.server_address[1]}"
        sender = PooledTransport(verify=str(certificates.ca), connection_timeout=2, read_timeout=5, proxy=proxy_url)
        answers = [sender.send(HttpRequest("POST", url(server, "/sign"), json={"n": n})) for n in range(2)]
        proxy.shutdown()
    assert [answer.json() for answer in answers] == [{"echo": json.dumps({"n": n})} for n in range(2)]
    expected_credentials = "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert proxy.asked == [(f"localhost:{server.server_address[1]}", expected_credentials)]  # one tunnel, kept alive
    assert "Proxy-Authorization" not in server.received[0][1]  # the credentials go to the proxy alone
