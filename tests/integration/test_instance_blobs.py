"""The record of plugin instances in Blob storage (Azurite): conditional writes, and no trust in what it holds."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from shared.errors import Unavailable
from shared.id_blobs import DEFAULT_SERVER_RECORD, INSTANCES_SUFFIX, MAX_INSTANCE_RECORD_BYTES, InstanceBlobs

A = "a" * 32
B = "b" * 32


@pytest.fixture
def container(app_env):
    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    return service.get_container_client(f"t{uuid.uuid4().hex[:20]}")


def test_the_first_write_creates_the_container_and_the_record_and_a_stale_one_is_refused(container):
    records = InstanceBlobs(container, "key-metadata")
    assert records.read("spire-a") == ({}, None)
    assert records.write("spire-a", {A: frozenset({5})}, None) is False  # no container yet: made, then written on the next try
    assert records.write("spire-a", {A: frozenset({5})}, None) is True
    seen, version = records.read("spire-a")
    assert seen == {A: frozenset({5})} and version is not None
    assert records.write("spire-a", {A: frozenset({5, 6})}, None) is False  # it exists now
    assert records.write("spire-a", {A: frozenset({5, 6})}, version) is True
    assert records.write("spire-a", {B: frozenset({6})}, version) is False  # another instance wrote since that read
    assert records.read("spire-a")[0] == {A: frozenset({5, 6})}
    assert records.read(None) == ({}, None)  # the default server's record is its own


def test_the_records_sit_beside_the_id_blobs_and_never_in_one(container):
    records = InstanceBlobs(container, "key-metadata")
    container.create_container()
    records.write(None, {A: frozenset({1})}, None)
    records.write("spire-a", {A: frozenset({1})}, None)
    assert sorted(blob.name for blob in container.list_blobs()) == [
        f"key-metadata{INSTANCES_SUFFIX}{DEFAULT_SERVER_RECORD}",
        f"key-metadata{INSTANCES_SUFFIX}spire-a",
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"not-an-instance-id": [1], "' + b"c" * 32 + b'": "not a list"}',
        b'{"' + b"a" * 32 + b'": [' + b"1," * MAX_INSTANCE_RECORD_BYTES + b"1]}",
        b'{"' + b"a" * 32 + b'": [1e400, 1.5, "1", true]}',
        b"[" * 5000,
    ],
)
def test_a_record_this_app_did_not_write_reads_as_empty_and_the_next_write_replaces_it(container, content):
    records = InstanceBlobs(container, "key-metadata")
    container.create_container()
    blob = container.get_blob_client(f"key-metadata{INSTANCES_SUFFIX}spire-a")
    blob.upload_blob(content)
    seen, version = records.read("spire-a")
    assert seen == {} and version is not None
    assert records.write("spire-a", {A: frozenset({1})}, version) is True
    assert records.read("spire-a")[0] == {A: frozenset({1})}


def test_a_quick_read_of_storage_that_never_answers_gives_up_within_its_time():
    """A generate reads the record in one short attempt: storage that accepts and never answers costs it about 1 s."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        service = BlobServiceClient(f"http://127.0.0.1:{port}/devstoreaccount1", credential=None)
        records = InstanceBlobs(service.get_container_client("c"), "key-metadata")
        started = time.monotonic()
        with pytest.raises(Unavailable):
            records.read("spire-a", within_seconds=1.0)
        assert time.monotonic() - started < 5  # 1 s when unloaded; without the quick options, 30 s and more
