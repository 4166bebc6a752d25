"""A known server id re-checked against its blob on Azurite: restored when missing, stopping on another id.

Each test drives one identity with a clock of its own, so "a few minutes later" needs no waiting.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient

from devtools.stack.faultproxy import FaultProxy
from devtools.stack.traffic import Traffic
from shared import app_context
from shared.errors import Unavailable
from shared.id_blobs import LAST_USED, MAX_BLOB_BYTES, BlobIdStore, BlobIdStores
from shared.server_ids import RECHECK_INTERVAL, USE_RECORD_INTERVAL, StoredServerDirectory, StoredServerIdentity
from shared.settings import load_settings
from tests.unit.fakes import InMemoryVault

# The README's intervals, by value: the id re-checked every 2 minutes, use recorded once an hour.
TWO_MINUTES = timedelta(minutes=2)
ONE_HOUR = timedelta(hours=1)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class RecordingTransport(RequestsTransport):
    """The real transport, recording each request's method, path and headers."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def send(self, request, **kwargs):
        self.sent.append((request.method, request.url.split("?")[0], dict(request.headers)))
        return super().send(request, **kwargs)


@pytest.fixture
def storage(app_env):
    transport = RecordingTransport()
    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"], transport=transport)
    container = service.get_container_client(f"t{uuid.uuid4().hex[:20]}")
    container.transport = transport
    return container, transport


def identity_on(container, clock: Clock, blob: str = "key-metadata") -> StoredServerIdentity:
    return StoredServerIdentity(BlobIdStore(container, container.get_blob_client(blob)), clock)


def test_an_unchanged_blob_costs_one_conditional_read_every_interval(storage, caplog):
    container, transport = storage
    clock = Clock()
    identity = identity_on(container, clock)
    known = identity.server_id()
    transport.sent.clear()
    for _ in range(50):
        assert identity.server_id() == known
    clock.advance(TWO_MINUTES - timedelta(microseconds=1))
    assert identity.server_id() == known
    assert transport.sent == []  # within the interval: no request at all
    clock.advance(timedelta(microseconds=1))
    assert identity.server_id() == known
    ((method, _, headers),) = transport.sent
    assert method == "GET" and headers["If-None-Match"].strip('"')
    assert headers["x-ms-range"] == f"bytes=0-{MAX_BLOB_BYTES}"
    assert not [record for record in caplog.records if record.levelname != "INFO"]  # a 304, not a failed read


def test_a_deleted_blob_is_restored_with_the_known_id(storage):
    container, _ = storage
    clock = Clock()
    identity = identity_on(container, clock)
    known = identity.server_id()
    container.get_blob_client("key-metadata").delete_blob()
    clock.advance(RECHECK_INTERVAL)
    assert identity.server_id() == known
    assert container.get_blob_client("key-metadata").download_blob().readall().decode() == known
    # A new instance now reads the same id instead of minting one.
    assert identity_on(container, Clock()).server_id() == known


def replaced_while_serving(container, clock: Clock) -> tuple[StoredServerIdentity, str, object]:
    """An identity that has served its id, and whose blob now holds another one, due for a re-check."""
    identity = identity_on(container, clock)
    known = identity.server_id()
    blob = container.get_blob_client("key-metadata")
    blob.upload_blob(str(uuid.uuid4()).encode(), overwrite=True)
    clock.advance(RECHECK_INTERVAL)
    return identity, known, blob


def test_a_blob_replaced_with_another_id_stops_the_server_until_it_holds_its_id_again(storage, caplog):
    clock = Clock()
    identity, known, blob = replaced_while_serving(storage[0], clock)
    for _ in range(3):
        with pytest.raises(Unavailable, match="holds another server id"):
            identity.server_id()
    assert [r.levelname for r in caplog.records if "Stopping" in r.getMessage()] == ["ERROR"]  # logged once
    with pytest.raises(Unavailable, match="holds another server id"):
        identity.confirm()
    blob.upload_blob(known.encode(), overwrite=True)
    assert identity.confirm() == known
    assert identity.server_id() == known


def test_a_stopped_server_whose_blob_is_deleted_restores_it_and_serves_again(storage):
    clock = Clock()
    identity, known, blob = replaced_while_serving(storage[0], clock)
    with pytest.raises(Unavailable, match="holds another server id"):
        identity.server_id()
    blob.delete_blob()  # the operator removes the foreign id
    assert identity.confirm() == known
    assert blob.download_blob().readall().decode() == known
    clock.advance(RECHECK_INTERVAL)
    assert identity.server_id() == known


def test_before_maintenance_the_blob_is_read_whatever_the_interval(storage):
    container, _ = storage
    identity = identity_on(container, Clock())
    identity.server_id()
    container.get_blob_client("key-metadata").upload_blob(str(uuid.uuid4()).encode(), overwrite=True)
    with pytest.raises(Unavailable, match="holds another server id"):
        identity.confirm()


@pytest.mark.parametrize("content", [b"x" * (1024 * 1024), b"", b"not a uuid"])
def test_a_blob_that_holds_no_id_is_a_503_and_left_untouched(storage, content):
    container, transport = storage
    container.create_container()
    blob = container.get_blob_client("key-metadata")
    blob.upload_blob(content)
    transport.sent.clear()
    with pytest.raises(Unavailable, match="left untouched"):
        identity_on(container, Clock()).server_id()
    reads = [headers.get("x-ms-range") for method, _, headers in transport.sent if method == "GET"]
    assert reads and set(reads) == {f"bytes=0-{MAX_BLOB_BYTES}"}  # never more than the cap and one byte
    assert blob.download_blob().readall() == content


def test_a_huge_blob_written_while_serving_stops_the_server(storage):
    container, _ = storage
    clock = Clock()
    identity = identity_on(container, clock)
    identity.server_id()
    container.get_blob_client("key-metadata").upload_blob(b"0" * (64 * 1024), overwrite=True)
    clock.advance(RECHECK_INTERVAL)
    with pytest.raises(Unavailable, match="larger than 4096 bytes"):
        identity.server_id()


def test_use_is_written_once_an_interval_and_read_by_other_instances(storage):
    container, transport = storage
    clock = Clock()
    identity = identity_on(container, clock, "key-metadata.servers/a")
    identity.server_id()  # created with last_used: now
    transport.sent.clear()
    for _ in range(100):
        identity.record_use()
    clock.advance(ONE_HOUR - timedelta(microseconds=1))
    identity.record_use()
    assert transport.sent == []
    clock.advance(timedelta(microseconds=1))
    for _ in range(100):
        identity.record_use()
    assert [method for method, _, _ in transport.sent] == ["PUT"]
    stored = container.get_blob_client("key-metadata.servers/a").get_blob_properties().metadata[LAST_USED]
    assert datetime.fromisoformat(stored) == clock.now
    # Writing metadata moved the ETag; the writer knows the new one, so its next re-check is a 304.
    transport.sent.clear()
    clock.advance(RECHECK_INTERVAL)
    identity.server_id()
    assert len(transport.sent) == 1
    # Another instance that read the fresh last_used does not write it again.
    other = identity_on(container, clock, "key-metadata.servers/a")
    other.server_id()
    transport.sent.clear()
    other.record_use()
    assert transport.sent == []


def test_named_servers_used_within_the_age_are_listed(storage):
    container, _ = storage
    clock = Clock()
    directory = StoredServerDirectory(BlobIdStores(container, "dir/key-metadata"), clock)
    assert directory.names_used_since(clock.now) == []  # no container yet
    for name in ("b", "a", "old"):
        directory.identity(name).server_id()
    directory.identity(None).server_id()
    container.get_blob_client("dir/key-metadata.servers/old").set_blob_metadata({LAST_USED: (clock.now - timedelta(days=20)).isoformat()})
    assert directory.names_used_since(clock.now - timedelta(days=14)) == ["a", "b"]


def test_serving_a_named_server_adds_no_blob_request_per_call(app_env, monkeypatch):
    for name, value in app_env.items():
        monkeypatch.setenv(name, value)
    traffic = Traffic()
    servers = app_context.build_servers(load_settings(app_env), raw_request_hook=traffic)
    servers.serve("spire-a").get_public_keys()  # first call: the id blob is read, then created
    storage = urlsplit(app_env["AzureWebJobsStorage"].split("BlobEndpoint=")[1]).netloc
    first = [request for request in traffic.sent if request[1] == storage]
    assert 1 <= len(first) <= 4
    for _ in range(200):
        servers.serve("spire-a").get_public_keys()
    assert [request for request in traffic.sent if request[1] == storage] == first


def test_a_blob_outage_while_serving_keeps_the_known_id_and_stops_maintenance(app_env, azurite):
    with FaultProxy(azurite.url) as proxy:
        proxied = app_env["AzureWebJobsStorage"].replace(azurite.url, proxy.url)
        container = BlobServiceClient.from_connection_string(proxied, retry_total=0).get_container_client(f"t{uuid.uuid4().hex[:20]}")
        clock = Clock()
        identity = identity_on(container, clock)
        known = identity.server_id()
        proxy.respond(503, times=None)
        clock.advance(RECHECK_INTERVAL)
        assert identity.server_id() == known  # the check failed; serving goes on with the known id
        assert proxy.faults_injected == 1  # the re-check ran, and failed
        with pytest.raises(Unavailable, match="could not read"):
            identity.confirm()  # maintenance does not run on an id it could not confirm
        proxy.clear()
        assert identity.confirm() == known


def test_a_stopped_servers_restored_blob_ends_its_stop_without_it_calling_again(storage):
    """Health asks for the conflicts: a stopped server's blob is read again when due, not only when it calls."""
    container, transport = storage
    clock = Clock()
    servers = app_context.SpireServers("example.org", StoredServerDirectory(BlobIdStores(container, "key-metadata"), clock),
                                       InMemoryVault(), clock=clock)
    known = servers.check("spire-a")
    blob = container.get_blob_client("key-metadata.servers/spire-a")
    blob.upload_blob(str(uuid.uuid4()).encode(), overwrite=True)
    clock.advance(RECHECK_INTERVAL)
    with pytest.raises(Unavailable, match="holds another server id"):
        servers.check("spire-a")
    blob.upload_blob(known.encode(), overwrite=True)
    transport.sent.clear()
    assert len(servers.conflicts()) == 1 and transport.sent == []  # not due yet: nothing read
    clock.advance(RECHECK_INTERVAL)
    assert servers.conflicts() == []
    assert servers.check("spire-a") == known


def test_use_is_recorded_only_while_the_blob_has_the_etag_given(storage):
    container, _ = storage
    blob = container.get_blob_client("key-metadata")
    store = BlobIdStore(container, blob)
    known, now = str(uuid.uuid4()), datetime(2026, 1, 1, tzinfo=timezone.utc)
    etag = store.create(known, now)
    assert store.record_use(known, now + USE_RECORD_INTERVAL, etag) is not None
    blob.upload_blob(str(uuid.uuid4()).encode(), overwrite=True)  # replaced: its ETag is another
    assert store.record_use(known, now + 2 * USE_RECORD_INTERVAL, etag) is None
    assert blob.get_blob_properties().metadata == {}  # what replaced it is left as it is
