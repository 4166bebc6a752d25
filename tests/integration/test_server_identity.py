"""The server id in its blob, against Azurite: created once, shared, never replaced on a failure."""

from __future__ import annotations

import threading
import uuid

from azure.storage.blob import BlobServiceClient

from shared import app_context
from shared.settings import load_settings
from tests.integration.conftest import make_app


def _blob(env: dict[str, str]):
    container, blob = env["KEY_METADATA_BLOB"].split("/", 1)
    return BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]).get_blob_client(container, blob)


def test_first_use_creates_the_server_id_blob_and_later_instances_reuse_it(app_env, monkeypatch, callers):
    first = make_app(app_env, monkeypatch, callers)
    first.generate("a", "ec-p256")
    stored = _blob(app_env).download_blob().readall().decode()
    assert str(uuid.UUID(stored)) == first.manager.naming().server_id
    restarted = make_app(app_env, monkeypatch, callers)
    assert restarted.get("a")[0] == 200
    assert restarted.manager.naming().server_id == stored


def test_instances_starting_together_end_with_one_server_id(app_env, monkeypatch):
    for name, value in app_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(app_env)
    managers = [app_context.build_servers(settings).default_manager for _ in range(8)]
    ids: list[str] = []
    barrier = threading.Barrier(len(managers))

    def start(manager):
        barrier.wait()
        ids.append(manager.naming().server_id)

    threads = [threading.Thread(target=start, args=(m,)) for m in managers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert _blob(app_env).download_blob().readall().decode() == ids[0]


def test_unparsable_content_is_503_and_left_untouched(app_env, monkeypatch, callers):
    container, _ = app_env["KEY_METADATA_BLOB"].split("/", 1)
    BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).create_container(container)
    _blob(app_env).upload_blob(b"not a uuid")
    app = make_app(app_env, monkeypatch, callers)
    status, body = app.generate("a", "ec-p256")
    assert status == 503
    assert body["error"]["code"] == "Unavailable" and "does not hold a server id" in body["error"]["message"]
    assert app.health()[1]["dependency"] == "blob_storage"
    assert _blob(app_env).download_blob().readall() == b"not a uuid"
    assert app.vault_requests() == []


def test_key_identifier_value_is_the_server_id_and_no_blob_is_used(app_env, monkeypatch, callers):
    env = {**app_env, **callers.settings(server_names=("",)), "KEY_METADATA_BLOB": "", "KEY_IDENTIFIER_VALUE": "fixed-server-1"}
    app = make_app(env, monkeypatch, callers)
    app.generate("a", "ec-p256")
    assert app.manager.naming().server_id == "fixed-server-1"
    assert not _blob(app_env).exists()
