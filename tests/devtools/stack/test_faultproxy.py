"""FaultProxy against real stand-ins: localvault over TLS, Azurite over http through the Azure SDK."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from devtools.stack.faultproxy import FaultProxy, make_server_certificate
from devtools.stack.services import AZURITE_ACCOUNT, AZURITE_KEY, Service, start_azurite, start_localvault

THROTTLED = b'{"error": {"code": "Throttled", "message": "Slow down."}}'


@pytest.fixture(scope="module")
def proxy_certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    return make_server_certificate(tmp_path_factory.mktemp("proxy-certs"))


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_localvault(0, 0, tmp_path_factory.mktemp("vault-certs"))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_azurite(0, tmp_path_factory.mktemp("azurite"))
    yield service
    service.stop()


@pytest.fixture
def proxy(vault: Service, proxy_certs: tuple[str, str, str]) -> Iterator[FaultProxy]:
    cert, key, _ = proxy_certs
    with FaultProxy(vault.url, ca_bundle=vault.details["ca_bundle"], tls=(cert, key)) as running:
        yield running


@pytest.fixture
def ca(proxy_certs: tuple[str, str, str]) -> str:
    return proxy_certs[2]


def test_passes_requests_through_over_tls(proxy: FaultProxy, ca: str) -> None:
    assert proxy.url.startswith("https://localhost:")
    response = requests.get(proxy.url + "/ping", verify=ca, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(response.content))
    assert proxy.requests == [("GET", "/ping")]
    assert proxy.faults_injected == 0


def test_records_each_requests_headers_with_lower_case_names(proxy: FaultProxy, ca: str) -> None:
    requests.get(proxy.url + "/ping", headers={"Authorization": "Bearer t1"}, verify=ca, timeout=5)
    requests.get(proxy.url + "/ping", verify=ca, timeout=5)
    first, second = [fields for *_, fields in proxy.received]
    assert first["authorization"] == "Bearer t1" and "authorization" not in second


def test_keeps_client_connections_alive(proxy: FaultProxy, ca: str) -> None:
    with requests.Session() as session:
        for _ in range(4):
            assert session.get(proxy.url + "/ping", verify=ca, timeout=5).status_code == 200
    assert proxy.connections == 1
    assert len(proxy.requests) == 4


def test_throttles_then_passes_through_when_times_run_out(proxy: FaultProxy, ca: str) -> None:
    proxy.respond(429, headers={"Retry-After": "1"}, body=THROTTLED, times=2)
    with requests.Session() as session:
        for _ in range(2):
            response = session.get(proxy.url + "/ping", verify=ca, timeout=5)
            assert response.status_code == 429
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"]["code"] == "Throttled"
        assert session.get(proxy.url + "/ping", verify=ca, timeout=5).status_code == 200
    assert proxy.faults_injected == 2
    assert proxy.connections == 1  # a faulted answer keeps the connection usable


def test_service_unavailable(proxy: FaultProxy, ca: str) -> None:
    proxy.respond(503)
    assert requests.get(proxy.url + "/ping", verify=ca, timeout=5).status_code == 503
    assert requests.get(proxy.url + "/ping", verify=ca, timeout=5).status_code == 200


def test_reset_closes_the_connection_without_an_answer(proxy: FaultProxy, ca: str) -> None:
    proxy.reset()
    with pytest.raises(requests.ConnectionError):
        requests.get(proxy.url + "/ping", verify=ca, timeout=5)
    assert requests.get(proxy.url + "/ping", verify=ca, timeout=5).status_code == 200
    assert proxy.faults_injected == 1


def test_stall_outlasts_the_client_read_timeout_and_ends_on_stop(proxy: FaultProxy, ca: str) -> None:
    proxy.stall(60)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.get(proxy.url + "/ping", verify=ca, timeout=0.5)
    assert requests.get(proxy.url + "/ping", verify=ca, timeout=5).status_code == 200
    proxy.stop()  # the stalled request is still held; stopping must not wait for it
    assert time.monotonic() - started < 5


def test_stop_refuses_connections_and_start_reuses_the_port(proxy: FaultProxy, ca: str) -> None:
    url = proxy.url
    with requests.Session() as session:
        assert session.get(url + "/ping", verify=ca, timeout=5).status_code == 200
        proxy.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url + "/ping", verify=ca, timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/ping", verify=ca, timeout=5)
        proxy.start()
        assert proxy.url == url
        assert session.get(url + "/ping", verify=ca, timeout=5).status_code == 200


def test_filters_by_method_and_path(proxy: FaultProxy, ca: str) -> None:
    proxy.respond(403, method="post", times=None)
    proxy.respond(503, path=r"^/ping\?fail=1$")
    assert requests.get(proxy.url + "/ping", verify=ca, timeout=5).status_code == 200
    assert requests.post(proxy.url + "/ping", verify=ca, timeout=5).status_code == 403
    assert requests.get(proxy.url + "/ping?fail=1", verify=ca, timeout=5).status_code == 503
    assert requests.get(proxy.url + "/ping?fail=1", verify=ca, timeout=5).status_code == 200  # used up
    assert requests.post(proxy.url + "/ping", verify=ca, timeout=5).status_code == 403  # until cleared
    proxy.clear()
    assert requests.post(proxy.url + "/ping", verify=ca, timeout=5).status_code != 403
    assert proxy.faults_injected == 3
    assert proxy.requests == [
        ("GET", "/ping"),
        ("POST", "/ping"),
        ("GET", "/ping?fail=1"),
        ("GET", "/ping?fail=1"),
        ("POST", "/ping"),
        ("POST", "/ping"),
    ]


def test_faults_apply_in_the_order_they_were_added(proxy: FaultProxy, ca: str) -> None:
    proxy.respond(429)
    proxy.respond(503)
    statuses = [requests.get(proxy.url + "/ping", verify=ca, timeout=5).status_code for _ in range(3)]
    assert statuses == [429, 503, 200]


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers with its own absolute URL (like a Key Vault nextLink), the Host it saw and the body."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        received = self.rfile.read(length) if length else b""
        own = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = json.dumps({"nextLink": f"{own}/keys?page=2", "host": self.headers["Host"], "body": received.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rewrites_upstream_urls_in_bodies_only_when_asked(echo_upstream: str) -> None:
    with FaultProxy(echo_upstream) as plain:
        answer = requests.get(plain.url + "/keys", timeout=5).json()
        assert answer["nextLink"] == f"{echo_upstream}/keys?page=2"
        assert answer["host"] == echo_upstream.removeprefix("http://")  # Host rewritten to the upstream
    with FaultProxy(echo_upstream, rewrite_body_urls=True) as rewriting:
        response = requests.get(rewriting.url + "/keys", timeout=5)
        assert response.json()["nextLink"] == f"{rewriting.url}/keys?page=2"
        assert response.headers["Content-Length"] == str(len(response.content))


def test_forwards_request_bodies_sized_or_chunked(echo_upstream: str) -> None:
    with FaultProxy(echo_upstream) as proxy:
        assert requests.post(proxy.url + "/sign", data=b"sized", timeout=5).json()["body"] == "sized"
        chunked = requests.post(proxy.url + "/sign", data=iter([b"chu", b"nked"]), timeout=5)
        assert chunked.json()["body"] == "chunked"


def test_unreachable_upstream_answers_bad_gateway() -> None:
    with FaultProxy("http://127.0.0.1:9") as proxy:  # the discard port: nothing listens there
        assert requests.get(proxy.url + "/ping", timeout=5).status_code == 502


def test_close_stops_every_thread(proxy: FaultProxy, ca: str) -> None:
    proxy.stall(60)
    with pytest.raises(requests.ReadTimeout):
        requests.get(proxy.url + "/ping", verify=ca, timeout=0.5)
    proxy.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("faultproxy") and t.is_alive()]


def test_blob_sdk_through_the_proxy_retries_a_503(azurite: Service) -> None:
    with FaultProxy(azurite.url) as proxy:
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={proxy.url}/{AZURITE_ACCOUNT};"
        )
        client = BlobServiceClient.from_connection_string(connection_string, retry_total=2, initial_backoff=0.1, increment_base=1)
        container = client.create_container(f"proxy-{uuid.uuid4().hex[:8]}")
        container.upload_blob("first.txt", b"through the proxy")
        assert container.get_blob_client("first.txt").get_blob_properties().size == len(b"through the proxy")  # HEAD

        proxy.respond(503, times=1, method="PUT")
        container.upload_blob("second.txt", b"after a retry")
        assert container.download_blob("second.txt").readall() == b"after a retry"
        assert proxy.faults_injected == 1
        puts = [path for method, path in proxy.requests if method == "PUT" and "second.txt" in path]
        assert len(puts) == 2  # the faulted attempt and the retry
