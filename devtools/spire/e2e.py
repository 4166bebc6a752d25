"""`make e2e`: a real spire-server with the plugin, against the app on the local stack.

Starts Azurite, localvault and the app on devhost, puts a recording proxy in front of the app (so
the run can count what the plugin asks), then runs named steps in order and prints PASS or FAIL for
each. Steps build on each other, so the first failure ends the run; the steps after it are reported
as not run. Everything listens on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devtools.spire.server import LocalApp, PluginKeyManager, SpireServer, binaries, bundle_authority_keys, local_app, spki
from devtools.stack.faultproxy import FaultProxy

TRUST_DOMAIN = "e2e.example.org"
WORKLOAD = f"spiffe://{TRUST_DOMAIN}/e2e/workload"
FUNCTION_KEY_ENV = "E2E_FUNCTION_KEY"
# devhost does not check keys: the proxy in front of it shows that the plugin sends this one, and
# no log line may show it.
FUNCTION_KEY = f"e2e-function-key-{uuid.uuid4().hex}"
ROTATION_TIMEOUT_SECONDS = 150
# The plugin retries for SPIRE's 30 s call deadline; the server then stops.
STARTUP_FAILURE_TIMEOUT_SECONDS = 120


class StepFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Run:
    """What the steps share: the stack, the proxy in front of the app, the servers started."""

    work: Path
    spire_server: Path
    plugin: Path
    app: LocalApp
    proxy: FaultProxy
    servers: dict[str, SpireServer] = field(default_factory=dict)
    bundles: dict[str, tuple[str, dict]] = field(default_factory=dict)

    def server(self, name: str, ca_ttl: str = "24h", svid_ttl: str = "1h", trust_domain: str = TRUST_DOMAIN) -> SpireServer:
        if name not in self.servers:
            key_manager = PluginKeyManager(self.plugin, self.proxy.url, name, FUNCTION_KEY_ENV)
            self.servers[name] = SpireServer(
                self.spire_server, self.work / name, trust_domain, key_manager, ca_ttl, svid_ttl, env={FUNCTION_KEY_ENV: FUNCTION_KEY}
            )
        return self.servers[name]

    def app_keys(self, server_name: str) -> dict[str, bytes]:
        """The app's keys of a server, asked directly (not through the proxy): key id -> SPKI DER."""
        request = urllib.request.Request(
            self.app.devhost.url + "/api/keys", headers={"X-SPIRE-Server-Name": server_name, "X-SPIRE-Trust-Domain": TRUST_DOMAIN}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            keys = json.load(response)["public_keys"]
        return {key["id"]: base64.b64decode(key["pkix_data"]) for key in keys}

    def generate_key_calls(self, server_name: str) -> int:
        """GenerateKey calls the plugin of one server sent; other servers (a rotating one) keep theirs apart."""
        return sum(
            1
            for method, target, fields in self.proxy.received
            if method == "POST" and target.split("?")[0] == "/api/keys" and fields.get("x-spire-server-name") == server_name
        )


# ---- checks shared by several steps ------------------------------------------------------------


def verify_x509_svid(server: SpireServer, into: Path) -> x509.Certificate:
    """Mint an X.509-SVID and verify it against the server's bundle with openssl."""
    svid_path = server.mint_x509(WORKLOAD, into)
    bundle_path = into / "trust-bundle.pem"
    bundle_path.write_text(server.bundle_pem())
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(bundle_path), "-partial_chain", str(svid_path)], capture_output=True, text=True
    )
    check(result.returncode == 0, f"openssl verify failed: {result.stdout}{result.stderr}")
    svid = x509.load_pem_x509_certificates(svid_path.read_bytes())[0]
    uris = svid.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    check(uris == [WORKLOAD], f"the SVID names {uris}, not {WORKLOAD}")
    return svid


def issuer_key(svid: x509.Certificate, server: SpireServer) -> bytes:
    """The SPKI of the bundle authority that issued ``svid``."""
    for authority in x509.load_pem_x509_certificates(server.bundle_pem().encode()):
        if authority.subject == svid.issuer:
            with contextlib.suppress(Exception):
                svid.verify_directly_issued_by(authority)
                return spki(authority)
    raise StepFailed("no bundle authority issued the SVID")


def verify_jwt_svid(server: SpireServer) -> bytes:
    """Mint a JWT-SVID and verify its ES256 signature against the bundle's JWT keys; returns the key's SPKI."""
    token = server.mint_jwt(WORKLOAD, "e2e")
    header_b64, payload_b64, signature_b64 = token.split(".")
    header, payload = json.loads(_b64url(header_b64)), json.loads(_b64url(payload_b64))
    jwt_keys = {key["kid"]: key for key in server.bundle_jwks()["keys"] if key.get("use") == "jwt-svid"}
    check(header.get("alg") == "ES256", f"unexpected JWT alg {header.get('alg')}")
    check(header.get("kid") in jwt_keys, f"the JWT's kid {header.get('kid')} is not in the bundle")
    jwk = jwt_keys[header["kid"]]
    public_key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64url(jwk["x"]), "big"), int.from_bytes(_b64url(jwk["y"]), "big"), ec.SECP256R1()
    ).public_key()
    raw = _b64url(signature_b64)
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public_key.verify(signature, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    check(payload.get("sub") == WORKLOAD and payload.get("aud") in (["e2e"], "e2e"), f"unexpected JWT claims {payload}")
    check(payload["exp"] > time.time(), "the JWT-SVID has expired")
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def keys_with_prefix(keys: dict[str, bytes], prefix: str) -> set[bytes]:
    return {key for key_id, key in keys.items() if key_id.startswith(prefix)}


def snapshot(server: SpireServer) -> tuple[str, dict]:
    return server.bundle_pem(), server.bundle_jwks()


def restart(server: SpireServer) -> None:
    server.stop()
    server.start()
    server.wait_healthy()


# ---- the steps -------------------------------------------------------------------------------


def server_becomes_healthy(run: Run) -> None:
    server = run.server("e2e-alpha")
    server.start()
    server.wait_healthy()


def bundle_authority_is_the_apps_ca_key(run: Run) -> None:
    server = run.servers["e2e-alpha"]
    bundle_keys = bundle_authority_keys(server.bundle_pem())
    app_ca_keys = keys_with_prefix(run.app_keys("e2e-alpha"), "x509-CA-")
    check(len(bundle_keys) == 1, f"expected one X.509 authority, the bundle has {len(bundle_keys)}")
    check(bundle_keys == app_ca_keys, "the bundle's X.509 authority is not the app's x509-CA key of this server")


def x509_svid_verifies(run: Run) -> None:
    server = run.servers["e2e-alpha"]
    svid = verify_x509_svid(server, run.work / "alpha-svid")
    check(issuer_key(svid, server) == run.app_keys("e2e-alpha")["x509-CA-A"], "the SVID was not signed by the app's x509-CA-A key")


def jwt_svid_verifies(run: Run) -> None:
    key = verify_jwt_svid(run.servers["e2e-alpha"])
    check(key == run.app_keys("e2e-alpha")["JWT-Signer-A"], "the JWT-SVID was not signed by the app's JWT-Signer-A key")


def restart_keeps_keys_and_bundle(run: Run) -> None:
    server = run.servers["e2e-alpha"]
    before, keys_before, calls_before = snapshot(server), run.app_keys("e2e-alpha"), run.generate_key_calls("e2e-alpha")
    restart(server)
    calls = run.generate_key_calls("e2e-alpha") - calls_before
    check(calls == 0, f"the restart made {calls} GenerateKey calls")
    check(snapshot(server) == before, "the bundle changed across the restart")
    check(run.app_keys("e2e-alpha") == keys_before, "the app's keys changed across the restart")
    verify_x509_svid(server, run.work / "alpha-svid-restarted")
    run.bundles["e2e-alpha"] = before


def two_servers_keep_their_own_keys(run: Run) -> None:
    alpha_keys = run.app_keys("e2e-alpha")
    beta = run.server("e2e-beta")
    beta.start()
    beta.wait_healthy()
    beta_keys = run.app_keys("e2e-beta")
    check(run.app_keys("e2e-alpha") == alpha_keys, "starting e2e-beta changed e2e-alpha's keys")
    check(set(alpha_keys.values()).isdisjoint(beta_keys.values()), "the two servers share keys")
    check(bundle_authority_keys(beta.bundle_pem()) == keys_with_prefix(beta_keys, "x509-CA-"), "e2e-beta's bundle is not its own CA key")
    run.bundles["e2e-beta"] = snapshot(beta)
    servers = ("e2e-alpha", "e2e-beta")
    calls_before = [run.generate_key_calls(name) for name in servers]
    for name in servers:
        restart(run.servers[name])
    check([run.generate_key_calls(name) for name in servers] == calls_before, "restarting the two servers made GenerateKey calls")
    for name, keys in (("e2e-alpha", alpha_keys), ("e2e-beta", beta_keys)):
        check(run.app_keys(name) == keys, f"{name}'s keys changed")
        check(snapshot(run.servers[name]) == run.bundles[name], f"{name}'s bundle changed across restarts")
        verify_x509_svid(run.servers[name], run.work / f"{name}-svid-after-both-restarted")


def rotation_activates_slot_b(run: Run) -> None:
    # ca_ttl 60s: SPIRE prepares the next slot at half the CA's life and activates it at 5/6.
    server = run.server("e2e-rotation", ca_ttl="60s", svid_ttl="10s")
    server.start()
    server.wait_healthy()
    deadline = time.monotonic() + ROTATION_TIMEOUT_SECONDS
    attempt = 0
    while True:
        attempt += 1
        keys = run.app_keys("e2e-rotation")
        if "x509-CA-B" in keys:
            svid = verify_x509_svid(server, run.work / f"rotation-svid-{attempt}")
            if issuer_key(svid, server) == keys["x509-CA-B"]:
                break
        check(time.monotonic() < deadline, f"slot B was not active within {ROTATION_TIMEOUT_SECONDS} s; keys: {sorted(keys)}")
        time.sleep(2)
    check("JWT-Signer-B" in keys, "slot B has no JWT signer")
    check(keys["x509-CA-B"] in bundle_authority_keys(server.bundle_pem()), "slot B's CA key is not in the bundle")
    verify_jwt_svid(server)
    server.stop()  # its 60 s CA keeps rotating; the later steps need a quiet app


def app_stopped_at_startup(run: Run) -> str:
    server = run.servers["e2e-alpha"]
    server.stop()
    devhost_port = int(run.app.devhost.url.rsplit(":", 1)[1])
    run.app.devhost.stop()
    run.proxy.stop()  # the app's address now refuses connections
    server.start()
    code = server.wait_exit(STARTUP_FAILURE_TIMEOUT_SECONDS)
    log = server.log_tail(200)
    check(code != 0, "spire-server kept running without the app")
    errors = [line for line in log.splitlines() if "did not answer" in line and "gave up after" in line]
    check(bool(errors), f"no clear error in the server's log:\n{log}")
    run.app.launch_devhost(devhost_port)
    run.proxy.start()
    calls_before = run.generate_key_calls("e2e-alpha")
    server.start()
    server.wait_healthy()
    check(snapshot(server) == run.bundles["e2e-alpha"], "the bundle changed after the app came back")
    check(run.generate_key_calls("e2e-alpha") == calls_before, "the start after the outage made GenerateKey calls")
    return f"the server's error: {errors[-1]}"


def another_trust_domain_is_refused(run: Run) -> str:
    server = run.server("e2e-other-domain", trust_domain="other.example.org")
    calls_before = run.generate_key_calls("e2e-other-domain")
    server.start()
    code = server.wait_exit(STARTUP_FAILURE_TIMEOUT_SECONDS)
    errors = [line for line in server.log_tail(200).splitlines() if "InvalidArgument" in line and "trust domain" in line]
    check(code != 0 and bool(errors), f"the server was not refused clearly:\n{server.log_tail()}")
    check(run.generate_key_calls("e2e-other-domain") == calls_before, "the server asked the app to generate a key")
    check(not run.app_keys("e2e-other-domain"), "the app made keys for the refused server")
    return f"the server's error: {errors[-1]}"


def function_key_reached_the_app_and_no_log(run: Run) -> str:
    sent = [fields.get("x-functions-key") for *_, fields in run.proxy.received]
    check(bool(sent), "the plugin sent the app no request")
    without_key = sum(1 for key in sent if key != FUNCTION_KEY)
    check(without_key == 0, f"{without_key} of the plugin's {len(sent)} requests reached the app without the function key")
    for name, server in run.servers.items():
        check(FUNCTION_KEY not in server.log_path.read_text(errors="replace"), f"{name}'s log shows the function key")
    return f"the key came with all {len(sent)} requests of the plugin"


# A step raises on failure; it may return a note to print with its PASS.
STEPS: list[tuple[str, Callable[[Run], str | None]]] = [
    ("server becomes healthy", server_becomes_healthy),
    ("bundle X.509 authority is the app's CA key", bundle_authority_is_the_apps_ca_key),
    ("X.509-SVID from x509 mint verifies against the bundle", x509_svid_verifies),
    ("JWT-SVID verifies against the bundle's JWT key", jwt_svid_verifies),
    ("restart makes no GenerateKey call and keeps the bundle", restart_keeps_keys_and_bundle),
    ("two servers with different names keep their own keys across restarts", two_servers_keep_their_own_keys),
    ("short ca_ttl rotation prepares and activates slot B; SVIDs minted after it verify", rotation_activates_slot_b),
    ("app stopped at startup: clear error after the retries, a later start works", app_stopped_at_startup),
    ("a server of another trust domain is refused with a clear error", another_trust_domain_is_refused),
    ("the function key reached the app with every request and is in no server log", function_key_reached_the_app_and_no_log),
]


def run_steps(run: Run) -> bool:
    failed = False
    for name, step in STEPS:
        if failed:
            print(f"NOT RUN  {name}", flush=True)
            continue
        started = time.monotonic()
        try:
            note = step(run)
        except Exception as error:  # noqa: BLE001 - any error fails the step and is shown
            failed = True
            detail = str(error) if isinstance(error, StepFailed) else traceback.format_exc()
            print(f"FAIL     {name} ({time.monotonic() - started:.1f} s)\n{detail}", flush=True)
        else:
            print(f"PASS     {name} ({time.monotonic() - started:.1f} s)" + (f"\n         {note}" if note else ""), flush=True)
    return not failed


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main() -> int:
    started = time.monotonic()
    spire_server, plugin = binaries()
    with tempfile.TemporaryDirectory(prefix="spire-e2e-") as work, local_app(Path(work), TRUST_DOMAIN) as app:
        run = Run(Path(work), spire_server, plugin, app, FaultProxy(app.devhost.url).start())
        try:
            passed = run_steps(run)
            if not passed:
                for name, server in run.servers.items():
                    print(f"--- {name} log (last lines) ---\n{server.log_tail()}", flush=True)
        finally:
            for server in run.servers.values():
                server.stop()
            run.proxy.stop()
    print(f"e2e {'passed' if passed else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
