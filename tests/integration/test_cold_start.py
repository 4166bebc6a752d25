"""Simultaneous cold starts: separate processes on an empty metadata container end with one server id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from azure.storage.blob import BlobServiceClient

from tests.integration.conftest import make_app

INSTANCES = 8
# Each process builds the app as an instance would, waits for a shared start time so that all
# of them reach the empty container together, then generates a key of its own.
COLD_START = """
import json, sys, time
from shared import app_context
from shared.algorithms import KeyType
manager = app_context.default_key_manager()  # built, its server id not read yet
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
server_id = manager.naming().server_id
key = manager.generate_key(f"instance-{sys.argv[2]}", KeyType.EC_P256)
print(json.dumps({"server_id": server_id, "fingerprint": key.fingerprint}))
"""


def test_eight_instances_starting_at_once_share_one_server_id(app_env, monkeypatch, callers):
    env = {**os.environ, **app_env}
    start_at = time.time() + 4  # time for every interpreter to import the SDKs first
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", COLD_START, str(start_at), str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(INSTANCES)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    server_ids = {result["server_id"] for result in results}
    assert len(server_ids) == 1
    container, blob = app_env["KEY_METADATA_BLOB"].split("/", 1)
    stored = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_blob_client(container, blob)
    assert stored.download_blob().readall().decode() == server_ids.pop()

    _, listed = make_app(app_env, monkeypatch, callers).list()
    assert sorted(key["id"] for key in listed["public_keys"]) == sorted(f"instance-{i}" for i in range(INSTANCES))
