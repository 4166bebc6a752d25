"""Key Vault requests per operation, counted at the transport against the real local stand-ins."""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import azure.functions as func
from azure.keyvault.keys._shared import http_challenge_cache

from benchmarks import fakes
from benchmarks.common import Figure, environ
from devtools.stack.services import Service, app_settings, start_azurite, start_localvault
from devtools.stack.traffic import Traffic
from functions import keys, maintenance
from shared import app_context
from shared.algorithms import KeyType
from shared.key_manager import KeyManager
from shared.settings import load_settings

TRUST_DOMAIN = "bench.example.org"
LISTED_KEYS = (1, 10, 100)
SIGNED_KEY_VERSIONS = 200
SWEPT_KEYS = 100
STALE_SHIFT_SECONDS = 15 * 24 * 3600  # past the default STALE_KEY_AGE of 14 days
# The key manager trusts its listing cache only for keys Updated more than 5 s before it read them.
LISTING_SETTLE_SECONDS = 6.5
SETUP_THREADS = 8
DIGEST = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="  # SHA-256 of "test"


class Instance:
    """One app instance (its own key manager and Azure clients) for one server, called through its handlers."""

    def __init__(self, vault: Service, container: str, trust_domain: str = TRUST_DOMAIN) -> None:
        self.vault_host = urlsplit(vault.url).netloc
        self.traffic = Traffic()
        with environ({"TRUST_DOMAIN": trust_domain, "KEY_METADATA_BLOB": f"{container}/key-metadata"}):
            self.servers = app_context.build_servers(load_settings(os.environ), raw_request_hook=self.traffic)
        self.manager = self.servers.default_manager

    def call(self, handler, body=None, method="POST", params=None, maintainer=False, **route_params) -> dict:
        """Call ``handler`` as a SPIRE server acting as the default one, or as a maintainer; proving either makes no request."""
        app_context.install_servers(self.servers)
        server_headers = fakes.install_caller_gate()
        headers = fakes.tokens.bearer(fakes.tokens.MAINTAINER) if maintainer else server_headers
        data = json.dumps(body).encode() if body is not None else b""
        url = "http://localhost/api" + (f"?{urlencode(params)}" if params else "")  # the app reads the URL's query
        request = func.HttpRequest(method, url, body=data, headers=headers, params=params or {}, route_params=route_params)
        response = handler(request)
        return {"status": response.status_code, **json.loads(response.get_body() or b"{}")}

    def counted(self, handler, *args, **kwargs) -> tuple[dict, list[tuple[str, str]]]:
        """The handler's answer and the Key Vault requests (method, path) it made."""
        mark = len(self.traffic.sent)
        answer = self.call(handler, *args, **kwargs)
        return answer, [(m, p) for m, host, p in self.traffic.sent[mark:] if host == self.vault_host]


def _make_keys(manager: KeyManager, prefix: str, count: int) -> None:
    """Set-up, not measured: ``count`` keys of one server, made in parallel after a first one."""
    manager.generate_key(f"{prefix}0", KeyType.EC_P256)  # the server id, the token, the challenge
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(lambda index: manager.generate_key(f"{prefix}{index}", KeyType.EC_P256), range(1, count)))


def _container() -> str:
    return f"bench{uuid.uuid4().hex[:16]}"


def _pages(requests: list[tuple[str, str]]) -> int:
    """Listing pages: GET /keys requests (the local vault pages by 25)."""
    return sum(1 for method, path in requests if method == "GET" and path.rstrip("/") == "/keys")


def _figure(name: str, requests: list[tuple[str, str]], budget: int, listing: bool = False) -> Figure:
    shape = ", ".join(f"{n} {m}" for m, n in Counter(m for m, _ in requests).items())
    notes = f"{_pages(requests)} listing pages; {shape}" if listing else shape
    return Figure(f"requests: {name}", len(requests), "requests", budget, notes)


def single_operations(vault: Service, container: str) -> list[Figure]:
    app = Instance(vault, container)
    app.call(keys.generate_key, {"key_id": "warm-up", "key_type": "ec-p256"})  # server id, token, challenge
    generated, generate = app.counted(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"})
    _, get = app.counted(keys.get_public_key, method="GET", key_id="a")
    sign = {"data": DIGEST, "hash_algorithm": "SHA256"}
    with_fingerprint = {**sign, "key_fingerprint": generated["public_key"]["fingerprint"]}
    signed, sign_known = app.counted(keys.sign_data, with_fingerprint, key_id="a")
    assert signed["status"] == 200, signed
    _, sign_current = app.counted(keys.sign_data, sign, key_id="a")
    return [
        _figure("generate_key", generate, 2),
        _figure("get_public_key", get, 1),
        _figure("sign_data warm, with key_fingerprint", sign_known, 1),
        _figure("sign_data warm, without key_fingerprint", sign_current, 1),
    ]


def cold_sign(vault: Service, container: str) -> list[Figure]:
    """A new instance's first sign of a key with SIGNED_KEY_VERSIONS versions (after its challenge is paid)."""
    owner = Instance(vault, container)
    owner.manager.generate_key("many0", KeyType.EC_P256)  # the server id, the token, the challenge
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(lambda _: owner.manager.generate_key("many", KeyType.EC_P256), range(SIGNED_KEY_VERSIONS)))
    current = owner.manager.get_public_key("many")
    cold = Instance(vault, container)
    cold.call(keys.get_public_key, method="GET", key_id="many0")  # server id, token, challenge; nothing of "many"
    body = {"data": DIGEST, "hash_algorithm": "SHA256", "key_fingerprint": current.fingerprint}
    signed, requests = cold.counted(keys.sign_data, body, key_id="many")
    assert signed["status"] == 200, signed
    return [_figure(f"sign_data cold, key of {SIGNED_KEY_VERSIONS} versions", requests, 2)]


def cold_instance(vault: Service, container: str) -> list[Figure]:
    """Every request of a new instance's first get_public_key, by service (its server id blob exists)."""
    http_challenge_cache.clear()  # the SDK caches challenges per process; a new process starts without
    cold = Instance(vault, container)
    answer = cold.call(keys.get_public_key, method="GET", key_id="a")
    assert answer["status"] == 200, answer
    services = {urlsplit(vault.details["token_url"]).netloc: "token", cold.vault_host: "key vault"}
    sent = [(services.get(host, "blob"), method) for method, host, _ in cold.traffic.sent]
    sequence = " > ".join(f"{service} {method}" for service, method in sent)
    counts = Counter(service for service, _ in sent)
    return [
        Figure(f"requests: cold instance first get_public_key, {service}", counts[service], "requests", budget, sequence)
        for service, budget in (("blob", 1), ("token", 1), ("key vault", 2))
    ]


def sweep(vault: Service) -> list[Figure]:
    """Another server's keys, in a trust domain of their own, made stale by shifting the vault's clock."""
    domain = f"sweep-{uuid.uuid4().hex[:8]}.example.org"
    _make_keys(Instance(vault, _container(), domain).manager, "s", SWEPT_KEYS)
    sweeper = Instance(vault, _container(), domain)
    sweeper.call(keys.get_public_key, method="GET", key_id="none")  # server id, token, challenge (a 404)
    context = ssl.create_default_context(cafile=vault.details["ca_bundle"])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    shift = f"{vault.url.rstrip('/')}/management/vault/time/all?seconds={STALE_SHIFT_SECONDS}"
    # Lowkey Vault refuses the call without a JSON content type (415).
    time_shift = urllib.request.Request(shift, data=b"", method="PUT", headers={"Content-Type": "application/json"})
    opener.open(time_shift, timeout=10).close()
    report, requests = sweeper.counted(maintenance.sweep_stale_keys_now, params={"dry_run": "false"}, maintainer=True)
    assert len(report["deleted"]) == SWEPT_KEYS and not report["failed"], report
    # Each stale key is read again just before its deletion.
    return [_figure(f"sweep, {SWEPT_KEYS} stale keys", requests, _pages(requests) + 2 * len(report["deleted"]), True)]


def listing_and_refresh(vault: Service, listed: dict[int, str]) -> list[Figure]:
    figures = []
    for count, container in listed.items():
        lister = Instance(vault, container)
        lister.call(keys.get_public_key, method="GET", key_id="k0")  # server id, token, challenge; no listing
        for state in ("cold", "warm"):
            answer, requests = lister.counted(keys.get_public_keys, method="GET")
            assert len(answer["public_keys"]) == count, answer
            budget = _pages(requests) + (count if state == "cold" else 0)
            figures.append(_figure(f"get_public_keys {state}, {count} key{'s' * (count > 1)}", requests, budget, True))
    report, requests = lister.counted(maintenance.refresh_keys_now, maintainer=True)  # the last lister's: the most keys
    assert len(report["refreshed"]) == count and not report["failed"], report
    return figures + [_figure(f"refresh, {count} keys", requests, _pages(requests) + 2 * count, True)]


def measure(vault: Service) -> list[Figure]:
    # The keys to list come first, so that their Updated times settle while the other figures run.
    listed = {count: _container() for count in LISTED_KEYS}
    for count, container in listed.items():
        _make_keys(Instance(vault, container).manager, "k", count)
    settled_at = time.monotonic() + LISTING_SETTLE_SECONDS
    container = _container()
    figures = single_operations(vault, container) + cold_instance(vault, container) + cold_sign(vault, _container()) + sweep(vault)
    time.sleep(max(0.0, settled_at - time.monotonic()))
    return figures + listing_and_refresh(vault, listed)


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, environ({"DEVSTACK_ECHO": "0"}):
        azurite = start_azurite(0, Path(tmp) / "azurite")
        try:
            vault = start_localvault(0, 0, Path(tmp) / "localvault")
            try:
                with environ(app_settings(azurite, vault)):
                    return measure(vault)
            finally:
                vault.stop()
        finally:
            azurite.stop(grace_seconds=0)
            app_context.install_servers(None)
            app_context._callers = None
