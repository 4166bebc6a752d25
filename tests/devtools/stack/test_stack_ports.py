"""`python -m devtools.stack` with ports of its own: the app must reach these stand-ins, not the default ports."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import uuid

import requests
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from azure.storage.blob import BlobServiceClient

from devtools.entra.client import LocalEntra
from devtools.entra.directory import STATE_FILE
from devtools.entra.server import IDENTITY_HEADER_FILE
from devtools.stack.callers import local_callers
from devtools.stack.services import AZURITE_ACCOUNT, AZURITE_KEY, ROOT, Service, start

# Where the stack keeps its Entra ID between runs: its CA, tenant, managed-identity secret and the callers it registered.
ENTRA_STATE = ROOT / ".local" / "localentra"


def free_ports(count: int) -> list[int]:
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def local_spire_server_headers(entra_port: int, msi_port: int) -> dict[str, str]:
    """The Authorization header of a token as the stack's local SPIRE server, from its Entra ID on ``entra_port``."""
    entra = LocalEntra(
        Service(
            "localentra",
            None,
            f"https://127.0.0.1:{entra_port}",
            {
                "tenant_id": json.loads((ENTRA_STATE / STATE_FILE).read_text())["tenant_id"],
                "ca_bundle": str(ENTRA_STATE / "ca.pem"),
                "msi_endpoint": f"http://127.0.0.1:{msi_port}/msi/token",
                "msi_header": (ENTRA_STATE / IDENTITY_HEADER_FILE).read_text(),
            },
        )
    )
    callers = local_callers(entra, ENTRA_STATE)  # as the stack registered them
    return {"Authorization": f"Bearer {entra.token(callers.spire_server, callers.api, via='managed_identity')}"}


def test_the_chosen_ports_reach_the_app(monkeypatch):
    blob_port, vault_port, token_port, entra_port, msi_port, api_port = free_ports(6)
    container = f"t{uuid.uuid4().hex[:20]}"
    env = {**os.environ, "TRUST_DOMAIN": "ports.example.org", "KEY_METADATA_BLOB": f"{container}/key-metadata"}
    argv = [
        sys.executable,
        "-m",
        "devtools.stack",
        "--blob-port",
        str(blob_port),
        "--vault-port",
        str(vault_port),
        "--token-port",
        str(token_port),
        "--entra-port",
        str(entra_port),
        "--msi-port",
        str(msi_port),
        "--port",
        str(api_port),
    ]
    process, ready = start("devstack", argv, re.compile(r"Stack ready: the API is at (\S+)"), env=env)
    stack = Service("devstack", process, ready.group(1))
    try:
        assert stack.url == f"http://127.0.0.1:{api_port}/api"
        # The app verifies the token with the keys of the Entra ID on --entra-port, which issued it on --msi-port ...
        response = requests.post(
            f"{stack.url}/keys",
            json={"key_id": "ports", "key_type": "ec-p256"},
            headers=local_spire_server_headers(entra_port, msi_port),
            timeout=60,
        )
        assert response.status_code == 200, response.text

        # The key is in the vault on --vault-port, reached with a token from --token-port ...
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{token_port}/metadata/identity/oauth2/token")
        monkeypatch.setenv("IDENTITY_HEADER", "tests")
        vault = KeyClient(
            f"https://localhost:{vault_port}",
            ManagedIdentityCredential(),
            verify_challenge_resource=False,
            connection_verify=str(ROOT / ".local" / "localvault" / "ca.pem"),
        )
        assert len(list(vault.list_properties_of_keys())) == 1
        # ... and the server id it was named with is in Azurite on --blob-port.
        blobs = BlobServiceClient(
            f"http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT}", credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
        ).get_container_client(container)
        assert [blob.name for blob in blobs.list_blobs()] == ["key-metadata"]
    finally:
        stack.stop()
