"""A GenerateKey whose first Key Vault create is throttled, through the real plugin in spire-server.

The app on devhost reaches localvault through the fault proxy, which answers the first create with
429 and a Retry-After longer than the plugin's request_timeout. However the plugin and the app wait
and retry, one create per key id lands, and the key SPIRE holds is the one current in Key Vault.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.request
from pathlib import Path

from devtools.spire.server import (
    CLIENT_SECRET,
    EntraSignIn,
    PluginKeyManager,
    SpireServer,
    binaries,
    bundle_authority_keys,
    local_app,
)
from devtools.stack.faultproxy import FaultProxy, make_server_certificate
from devtools.stack.services import start_devhost
from tests.integration.test_faults import THROTTLED

TRUST_DOMAIN = "retries.example.org"
SERVER = "spire-a"
CREATE = r"/create(\?|$)"
RETRY_AFTER_SECONDS = 4  # twice request_timeout: the plugin gives the first attempt up first


def test_a_throttled_create_makes_one_key_that_spire_holds_and_signs_with(tmp_path: Path):
    spire_server, plugin = binaries()
    with local_app(tmp_path / "stack", TRUST_DOMAIN, {SERVER: [SERVER]}) as app:
        cert, key, ca = make_server_certificate(tmp_path / "proxy-cert")
        with FaultProxy(app.vault.url, ca_bundle=app.vault.details["ca_bundle"], tls=(cert, key), rewrite_body_urls=True) as proxy:
            devhost = start_devhost(
                0,
                {
                    **os.environ,
                    **app.env,
                    "KEY_VAULT_URI": proxy.url,
                    "KEY_VAULT_CA_BUNDLE": ca,
                    "KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION": "true",
                },
                no_timers=True,
            )
            try:
                proxy.respond(429, {"Retry-After": str(RETRY_AFTER_SECONDS)}, THROTTLED, method="POST", path=CREATE)
                sign_in = app.sign_in(SERVER, CLIENT_SECRET)
                short_attempts = EntraSignIn({**sign_in.settings, "request_timeout": "2s"}, sign_in.env)
                server = SpireServer(
                    spire_server, tmp_path / SERVER, TRUST_DOMAIN, PluginKeyManager(plugin, devhost.url, SERVER, short_attempts)
                )
                server.start()
                try:
                    server.wait_healthy()
                    time.sleep(2 * RETRY_AFTER_SECONDS)  # an abandoned invocation would have woken and created by now
                    creates = [target for method, target, _ in proxy.received if method == "POST" and re.search(CREATE, target)]
                    names = [target.split("?")[0].split("/")[-2] for target in creates[1:]]  # the first was the throttled one
                    assert len(names) == len(set(names)) == 2, f"a key was created more than once: {creates}"
                    current = _current_keys(app)
                    assert current["x509-CA-A"] in bundle_authority_keys(server.bundle_pem())
                    server.mint_x509(f"spiffe://{TRUST_DOMAIN}/workload", tmp_path / "svid")  # signs with it
                    assert "FailedPrecondition" not in server.log()
                finally:
                    server.stop()
            finally:
                devhost.stop()


def _current_keys(app) -> dict[str, bytes]:
    """The key current in Key Vault for each of the server's key ids, asked of the app directly."""
    token = app.entra.token(app.identities[SERVER], app.api)
    request = urllib.request.Request(
        app.devhost.url + "/api/keys",
        headers={"Authorization": f"Bearer {token}", "X-SPIRE-Server-Name": SERVER, "X-SPIRE-Trust-Domain": TRUST_DOMAIN},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return {key["id"]: base64.b64decode(key["pkix_data"]) for key in json.load(response)["public_keys"]}
