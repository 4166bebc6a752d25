"""`python -m devtools.stack` with ports of its own: the app must reach these stand-ins, not the default ports."""

from __future__ import annotations

import os
import re
import socket
import sys
import uuid

import requests
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from azure.storage.blob import BlobServiceClient

from devtools.stack.services import AZURITE_ACCOUNT, AZURITE_KEY, ROOT, Service, start


def free_ports(count: int) -> list[int]:
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_the_chosen_ports_reach_the_app(monkeypatch):
    blob_port, vault_port, token_port, api_port = free_ports(4)
    container = f"t{uuid.uuid4().hex[:20]}"
    env = {**os.environ, "TRUST_DOMAIN": "ports.example.org", "KEY_METADATA_BLOB": f"{container}/key-metadata"}
    argv = [sys.executable, "-m", "devtools.stack", "--blob-port", str(blob_port), "--vault-port", str(vault_port),
            "--token-port", str(token_port), "--port", str(api_port)]
    process, ready = start("devstack", argv, re.compile(r"Stack ready: the API is at (\S+)"), env=env)
    stack = Service("devstack", process, ready.group(1))
    try:
        assert stack.url == f"http://127.0.0.1:{api_port}/api"
        response = requests.post(f"{stack.url}/keys", json={"key_id": "ports", "key_type": "ec-p256"}, timeout=60)
        assert response.status_code == 200, response.text

        # The key is in the vault on --vault-port, reached with a token from --token-port ...
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{token_port}/metadata/identity/oauth2/token")
        monkeypatch.setenv("IDENTITY_HEADER", "tests")
        vault = KeyClient(f"https://localhost:{vault_port}", ManagedIdentityCredential(), verify_challenge_resource=False,
                          connection_verify=str(ROOT / ".local" / "localvault" / "ca.pem"))
        assert len(list(vault.list_properties_of_keys())) == 1
        # ... and the server id it was named with is in Azurite on --blob-port.
        blobs = BlobServiceClient(f"http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT}", credential={
            "account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}).get_container_client(container)
        assert [blob.name for blob in blobs.list_blobs()] == ["key-metadata"]
    finally:
        stack.stop()
