"""`make e2e`: real spire-servers with the plugin, and a real spire-agent, against the app on the local stack.

Starts Azurite, localvault, the local Entra ID and the app on devhost, puts a recording proxy in front
of the app (so the run can count what the plugins ask and read the headers they send), then runs
named steps in order and prints PASS or FAIL for each. Each server signs in to the local Entra ID as
an identity of its own, which the app lets act as that server's name alone. Steps build on each
other, so the first failure ends the run; the steps after it are reported as not run. Everything
listens on 127.0.0.1 or a Unix socket in the run's directory, and stops at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devtools.spire.server import (
    CLIENT_SECRET,
    MANAGED_IDENTITY,
    LocalApp,
    PluginKeyManager,
    SpireAgent,
    SpireError,
    SpireProcess,
    SpireServer,
    binaries,
    bundle_authority_keys,
    local_app,
    spire_binary,
    spki,
)
from devtools.stack.faultproxy import FaultProxy

TRUST_DOMAIN = "e2e.example.org"
WORKLOAD = f"spiffe://{TRUST_DOMAIN}/e2e/workload"
AUDIENCE = "e2e"
ALPHA, BETA, ROTATING, OTHER_DOMAIN = "e2e-alpha", "e2e-beta", "e2e-rotation", "e2e-other-domain"
OUTSIDER = "e2e-outsider"  # signs in, but its identity is not in the app's SPIRE_SERVER_IDENTITIES
# Each server's identity has its name, and signs in with the credential kind given here: alpha and
# beta sign in with the two kinds the local Entra ID serves, through azidentity.
CREDENTIALS = {
    ALPHA: CLIENT_SECRET,
    BETA: MANAGED_IDENTITY,
    ROTATING: CLIENT_SECRET,
    OTHER_DOMAIN: MANAGED_IDENTITY,
    OUTSIDER: CLIENT_SECRET,
}
ROTATION_TIMEOUT_SECONDS = 150
WORKLOAD_SVID_TIMEOUT_SECONDS = 30
# The plugin retries for SPIRE's 30 s call deadline; the server then stops.
STARTUP_FAILURE_TIMEOUT_SECONDS = 120
POLL_SECONDS = 2

T = TypeVar("T")


class StepFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Run:
    """What the steps share: the stack, the proxy in front of the app, the servers and agent started, the tokens got."""

    work: Path
    spire_server: Path
    spire_agent: Path
    plugin: Path
    app: LocalApp
    proxy: FaultProxy
    servers: dict[str, SpireServer] = field(default_factory=dict)
    agent: SpireAgent | None = None
    bundles: dict[str, tuple[str, dict]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def server(self, name: str, ca_ttl: str = "24h", svid_ttl: str = "1h", trust_domain: str = TRUST_DOMAIN) -> SpireServer:
        """The server ``name``, signing in as the identity of that name with its credential kind."""
        if name not in self.servers:
            key_manager = PluginKeyManager(self.plugin, self.proxy.url, name, self.app.sign_in(name, CREDENTIALS[name]))
            self.servers[name] = SpireServer(self.spire_server, self.work / name, trust_domain, key_manager, ca_ttl, svid_ttl)
        return self.servers[name]

    def token(self, identity: str) -> str:
        """An access token for the app's API as ``identity``, got once from the local Entra ID with its secret."""
        if identity not in self.tokens:
            self.tokens[identity] = self.app.entra.token(self.app.identities[identity], self.app.api)
        return self.tokens[identity]

    def call_app(self, method: str, path: str, server_name: str, token: str, body: dict | None = None) -> tuple[int, dict]:
        """Call the app directly (not through the proxy) as ``server_name`` with ``token``: (status, JSON answer)."""
        request = urllib.request.Request(
            self.app.devhost.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "X-SPIRE-Server-Name": server_name,
                "X-SPIRE-Trust-Domain": TRUST_DOMAIN,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    def app_keys(self, server_name: str) -> dict[str, bytes]:
        """The app's keys of a server, asked as the server's own identity: key id -> SPKI DER."""
        status, answer = self.call_app("GET", "/api/keys", server_name, self.token(server_name))
        check(status == 200, f"the app answered {status} to {server_name}'s keys: {answer}")
        return {key["id"]: base64.b64decode(key["pkix_data"]) for key in answer["public_keys"]}

    def generate_key_calls(self, server_name: str) -> int:
        """GenerateKey calls the plugin of one server sent; other servers (a rotating one) keep theirs apart."""
        return sum(
            1
            for method, target, fields in self.proxy.received
            if method == "POST" and target.split("?")[0] == "/api/keys" and fields.get("x-spire-server-name") == server_name
        )

    def processes(self) -> list[SpireProcess]:
        return [*self.servers.values(), *([self.agent] if self.agent else [])]

    def scratch(self, name: str) -> Path:
        """A new directory for one check's files."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))


# ---- checks shared by several steps ------------------------------------------------------------


def verify_x509_svid(svid_path: Path, bundle_path: Path) -> x509.Certificate:
    """Verify an X.509-SVID against a PEM bundle with openssl, and that it names the workload."""
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(bundle_path), "-partial_chain", str(svid_path)], capture_output=True, text=True
    )
    check(result.returncode == 0, f"openssl verify failed: {result.stdout}{result.stderr}")
    svid = x509.load_pem_x509_certificates(svid_path.read_bytes())[0]
    uris = svid.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    check(uris == [WORKLOAD], f"the SVID names {uris}, not {WORKLOAD}")
    return svid


def verify_minted_x509_svid(server: SpireServer, into: Path) -> x509.Certificate:
    """Mint an X.509-SVID with the server's CLI and verify it against the server's bundle."""
    svid_path = server.mint_x509(WORKLOAD, into)
    bundle_path = into / "trust-bundle.pem"
    bundle_path.write_text(server.bundle_pem())
    return verify_x509_svid(svid_path, bundle_path)


def issuer_key(svid: x509.Certificate, server: SpireServer) -> bytes:
    """The SPKI of the server's bundle authority that issued ``svid``."""
    for authority in x509.load_pem_x509_certificates(server.bundle_pem().encode()):
        if authority.subject == svid.issuer:
            with contextlib.suppress(Exception):
                svid.verify_directly_issued_by(authority)
                return spki(authority)
    raise StepFailed("no bundle authority issued the SVID")


def verify_jwt_svid(token: str, server: SpireServer) -> bytes:
    """Verify a JWT-SVID's ES256 signature against the server bundle's JWT keys, and its claims; returns the key's SPKI."""
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
    check(payload.get("sub") == WORKLOAD and payload.get("aud") in ([AUDIENCE], AUDIENCE), f"unexpected JWT claims {payload}")
    check(payload["exp"] > time.time(), "the JWT-SVID has expired")
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def minted_svid_keys(run: Run, server: SpireServer) -> tuple[bytes, bytes]:
    """Mint an X.509-SVID and a JWT-SVID with the server's CLI, verify both: the SPKIs of their issuing keys."""
    svid = verify_minted_x509_svid(server, run.scratch("minted"))
    return issuer_key(svid, server), verify_jwt_svid(server.mint_jwt(WORKLOAD, AUDIENCE), server)


def workload_svid_keys(run: Run, server: SpireServer) -> tuple[bytes, bytes]:
    """The workload's X.509-SVID and JWT-SVID through the agent's Workload API, verified (the X.509-SVID against
    the bundle the Workload API gives with it): the SPKIs of their issuing keys in the server's bundle."""
    assert run.agent is not None
    svid_path, bundle_path = run.agent.fetch_x509(run.scratch("workload"))
    svid = verify_x509_svid(svid_path, bundle_path)
    return issuer_key(svid, server), verify_jwt_svid(run.agent.fetch_jwt(AUDIENCE), server)


def slot_keys(run: Run, server_name: str, slot: str) -> tuple[bytes, bytes] | None:
    """The app's x509-CA and JWT-Signer keys of a server's slot ("A" or "B"), None while the slot has none."""
    keys = run.app_keys(server_name)
    names = (f"x509-CA-{slot}", f"JWT-Signer-{slot}")
    return (keys[names[0]], keys[names[1]]) if all(name in keys for name in names) else None


def wait_for(what: str, attempt: Callable[[], T | None], timeout: float) -> T:
    """Call ``attempt`` until it returns something; a SPIRE command that fails (nothing issued yet) is another try."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            result = attempt()
        except SpireError as error:
            result, last_error = None, str(error)
        if result is not None:
            return result
        check(time.monotonic() < deadline, f"{what} not within {timeout:.0f} s" + (f"; last: {last_error}" if last_error else ""))
        time.sleep(POLL_SECONDS)


def keys_with_prefix(keys: dict[str, bytes], prefix: str) -> set[bytes]:
    return {key for key_id, key in keys.items() if key_id.startswith(prefix)}


def snapshot(server: SpireServer) -> tuple[str, dict]:
    return server.bundle_pem(), server.bundle_jwks()


def start_healthy(server: SpireServer) -> None:
    server.start()
    server.wait_healthy()


def restart(server: SpireServer) -> None:
    server.stop()
    start_healthy(server)


def refused_at_start(run: Run, server: SpireServer, name: str, *clues: str) -> str:
    """Start a server the app refuses: it must stop with an error line holding every clue and make no key."""
    calls_before = run.generate_key_calls(name)
    server.start()
    code = server.wait_exit(STARTUP_FAILURE_TIMEOUT_SECONDS)
    errors = [line for line in server.log().splitlines() if all(clue in line for clue in clues)]
    check(code != 0 and bool(errors), f"the server was not refused clearly:\n{server.log_tail()}")
    check(run.generate_key_calls(name) == calls_before, "the server asked the app to generate a key")
    return f"the server's error: {errors[-1]}"


# ---- the steps -------------------------------------------------------------------------------


def server_becomes_healthy(run: Run) -> None:
    start_healthy(run.server(ALPHA))


def bundle_authority_is_the_apps_ca_key(run: Run) -> None:
    server = run.servers[ALPHA]
    bundle_keys = bundle_authority_keys(server.bundle_pem())
    app_ca_keys = keys_with_prefix(run.app_keys(ALPHA), "x509-CA-")
    check(len(bundle_keys) == 1, f"expected one X.509 authority, the bundle has {len(bundle_keys)}")
    check(bundle_keys == app_ca_keys, "the bundle's X.509 authority is not the app's x509-CA key of this server")


def x509_svid_verifies(run: Run) -> None:
    server = run.servers[ALPHA]
    svid = verify_minted_x509_svid(server, run.scratch("alpha-svid"))
    check(issuer_key(svid, server) == run.app_keys(ALPHA)["x509-CA-A"], "the SVID was not signed by the app's x509-CA-A key")


def jwt_svid_verifies(run: Run) -> None:
    server = run.servers[ALPHA]
    key = verify_jwt_svid(server.mint_jwt(WORKLOAD, AUDIENCE), server)
    check(key == run.app_keys(ALPHA)["JWT-Signer-A"], "the JWT-SVID was not signed by the app's JWT-Signer-A key")


def restart_keeps_keys_and_bundle(run: Run) -> None:
    server = run.servers[ALPHA]
    before, keys_before, calls_before = snapshot(server), run.app_keys(ALPHA), run.generate_key_calls(ALPHA)
    restart(server)
    calls = run.generate_key_calls(ALPHA) - calls_before
    check(calls == 0, f"the restart made {calls} GenerateKey calls")
    check(snapshot(server) == before, "the bundle changed across the restart")
    check(run.app_keys(ALPHA) == keys_before, "the app's keys changed across the restart")
    verify_minted_x509_svid(server, run.scratch("alpha-svid-restarted"))
    run.bundles[ALPHA] = before


def two_servers_keep_their_own_keys(run: Run) -> None:
    alpha_keys = run.app_keys(ALPHA)
    beta = run.server(BETA)
    start_healthy(beta)
    beta_keys = run.app_keys(BETA)
    check(run.app_keys(ALPHA) == alpha_keys, "starting e2e-beta changed e2e-alpha's keys")
    check(set(alpha_keys.values()).isdisjoint(beta_keys.values()), "the two servers share keys")
    check(bundle_authority_keys(beta.bundle_pem()) == keys_with_prefix(beta_keys, "x509-CA-"), "e2e-beta's bundle is not its own CA key")
    run.bundles[BETA] = snapshot(beta)
    servers = (ALPHA, BETA)
    calls_before = [run.generate_key_calls(name) for name in servers]
    for name in servers:
        restart(run.servers[name])
    check([run.generate_key_calls(name) for name in servers] == calls_before, "restarting the two servers made GenerateKey calls")
    for name, keys in ((ALPHA, alpha_keys), (BETA, beta_keys)):
        check(run.app_keys(name) == keys, f"{name}'s keys changed")
        check(snapshot(run.servers[name]) == run.bundles[name], f"{name}'s bundle changed across restarts")
        verify_minted_x509_svid(run.servers[name], run.scratch(f"{name}-svid-after-both-restarted"))


def another_servers_token_is_refused(run: Run) -> str:
    beta_keys = run.app_keys(BETA)
    alpha_token, alpha_object_id = run.token(ALPHA), run.app.identities[ALPHA].object_id
    digest = base64.b64encode(bytes(32)).decode()
    attempts = [  # each would act on beta's keys: replace its CA key, list them, sign with its CA key
        ("POST", "/api/keys", {"key_id": "x509-CA-A", "key_type": "ec-p256"}),
        ("GET", "/api/keys", None),
        ("POST", "/api/keys/x509-CA-A/sign", {"data": digest, "hash_algorithm": "SHA256"}),
    ]
    for method, path, body in attempts:
        status, answer = run.call_app(method, path, BETA, alpha_token, body)
        error = answer.get("error") or {}
        check(
            status == 403 and error.get("code") == "PermissionDenied",
            f"{method} {path} as e2e-beta with e2e-alpha's token: {status} {answer}",
        )
        check(alpha_object_id in error.get("message", ""), f"the refusal does not name e2e-alpha's object id: {error}")
    check(run.app_keys(BETA) == beta_keys, "e2e-beta's keys changed")
    return f"the app's answer: {error['message']}"


def unlisted_identity_fails_at_start(run: Run) -> str:
    object_id = run.app.register_identity(OUTSIDER).object_id
    return refused_at_start(run, run.server(OUTSIDER), OUTSIDER, "PermissionDenied", object_id)


def agent_serves_workload_svids_of_slot_a(run: Run) -> str:
    # ca_ttl 60s, so that the next step sees a rotation; the agent then renews the 10 s SVIDs of its workload.
    server = run.server(ROTATING, ca_ttl="60s", svid_ttl="10s")
    start_healthy(server)
    join_token = server.join_token()
    run.agent = SpireAgent(run.spire_agent, run.work / "agent", server)
    run.agent.attest(join_token)
    server.register_workload(server.agent_id(join_token), WORKLOAD, os.getuid())
    issuers = wait_for("the workload's SVIDs from the Workload API", lambda: workload_svid_keys(run, server), WORKLOAD_SVID_TIMEOUT_SECONDS)
    check(issuers == slot_keys(run, ROTATING, "A"), "the workload's SVIDs were not issued by the app's x509-CA-A and JWT-Signer-A keys")
    return f"agent {server.agent_id(join_token)}; workload uid {os.getuid()}"


def rotation_activates_slot_b(run: Run) -> None:
    # SPIRE prepares the next slot at half the CA's life and activates it at 5/6.
    server = run.servers[ROTATING]
    ca_key, _ = wait_for(
        "minted SVIDs issued by slot B", lambda: issued_by_slot(run, ROTATING, minted_svid_keys, "B"), ROTATION_TIMEOUT_SECONDS
    )
    check(ca_key in bundle_authority_keys(server.bundle_pem()), "slot B's CA key is not in the bundle")
    wait_for(
        "the workload's SVIDs from the Workload API issued by slot B",
        lambda: issued_by_slot(run, ROTATING, workload_svid_keys, "B"),
        WORKLOAD_SVID_TIMEOUT_SECONDS,
    )
    assert run.agent is not None
    run.agent.stop()
    server.stop()  # its 60 s CA keeps rotating; the later steps need a quiet app


def issued_by_slot(
    run: Run, name: str, svid_keys: Callable[[Run, SpireServer], tuple[bytes, bytes]], slot: str
) -> tuple[bytes, bytes] | None:
    """The slot's keys once SVIDs got by ``svid_keys`` from server ``name`` are issued by them; None before."""
    expected = slot_keys(run, name, slot)
    return expected if expected is not None and svid_keys(run, run.servers[name]) == expected else None


def app_stopped_at_startup(run: Run) -> str:
    server = run.servers[ALPHA]
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
    calls_before = run.generate_key_calls(ALPHA)
    start_healthy(server)
    check(snapshot(server) == run.bundles[ALPHA], "the bundle changed after the app came back")
    check(run.generate_key_calls(ALPHA) == calls_before, "the start after the outage made GenerateKey calls")
    return f"the server's error: {errors[-1]}"


def another_trust_domain_is_refused(run: Run) -> str:
    server = run.server(OTHER_DOMAIN, trust_domain="other.example.org")
    note = refused_at_start(run, server, OTHER_DOMAIN, "InvalidArgument", "trust domain")
    check(not run.app_keys(OTHER_DOMAIN), "the app made keys for the refused server")
    return note


def signed_in_with_tokens_that_no_log_shows(run: Run) -> str:
    for name, server in run.servers.items():
        clues = ("Signed in to Entra ID", f"credential={CREDENTIALS[name]}", f"object_id={run.app.identities[name].object_id}")
        signed_in = [line for line in server.log().splitlines() if all(clue in line for clue in clues)]
        check(bool(signed_in), f"{name}'s log does not say that the plugin signed in with {clues[1]} as {clues[2]}")
    received = run.proxy.received
    check(bool(received), "the plugins sent the app no request")
    authorizations = [fields.get("authorization", "") for *_, fields in received]
    without_token = sum(1 for value in authorizations if not value.startswith("Bearer "))
    check(without_token == 0, f"{without_token} of the plugins' {len(received)} requests came without a bearer token")
    with_function_key = sum(1 for *_, fields in received if "x-functions-key" in fields)
    check(with_function_key == 0, f"{with_function_key} of the plugins' requests sent a function key")
    plugin_tokens = {value.removeprefix("Bearer ") for value in authorizations}
    secrets = {principal.secret for principal in run.app.identities.values()} | {run.app.entra_service.details["msi_header"]}
    hidden = plugin_tokens | set(run.tokens.values()) | secrets
    logs = {process.directory.name: process.log() for process in run.processes()}
    for whose, log in logs.items():
        shown = sum(1 for value in hidden if value in log)
        check(shown == 0, f"{whose}'s log shows {shown} of the run's tokens and secrets")
    return (
        f"{len(run.servers)} plugins logged their object ids; all {len(received)} requests carried one of "
        f"{len(plugin_tokens)} tokens; no log of {len(logs)} shows any of {len(hidden)} tokens and secrets"
    )


# A step raises on failure; it may return a note to print with its PASS.
STEPS: list[tuple[str, Callable[[Run], str | None]]] = [
    ("server becomes healthy (signed in with a client secret)", server_becomes_healthy),
    ("bundle X.509 authority is the app's CA key", bundle_authority_is_the_apps_ca_key),
    ("X.509-SVID from x509 mint verifies against the bundle", x509_svid_verifies),
    ("JWT-SVID verifies against the bundle's JWT key", jwt_svid_verifies),
    ("restart makes no GenerateKey call and keeps the bundle", restart_keeps_keys_and_bundle),
    (
        "two servers with their own identities (client secret, managed identity) keep their own keys across restarts",
        two_servers_keep_their_own_keys,
    ),
    ("server A's token naming server B is refused (403) and B's keys are unchanged", another_servers_token_is_refused),
    ("a server whose identity is not in SPIRE_SERVER_IDENTITIES fails at start, naming its object id", unlisted_identity_fails_at_start),
    (
        "a spire-agent attests with a join token; the workload's X.509- and JWT-SVIDs from the Workload API verify, issued by slot A",
        agent_serves_workload_svids_of_slot_a,
    ),
    (
        "short ca_ttl rotation activates slot B; minted SVIDs and the workload's from the agent verify, issued by slot B",
        rotation_activates_slot_b,
    ),
    ("app stopped at startup: clear error after the retries, a later start works", app_stopped_at_startup),
    ("a server of another trust domain is refused with a clear error", another_trust_domain_is_refused),
    (
        "each plugin signed in as its identity; every request carried a bearer token, none a function key; no log shows a token or secret",
        signed_in_with_tokens_that_no_log_shows,
    ),
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
    spire_agent = spire_binary("SPIRE_AGENT")
    listed = {name: [name] for name in CREDENTIALS if name != OUTSIDER}
    with tempfile.TemporaryDirectory(prefix="spire-e2e-") as work, local_app(Path(work), TRUST_DOMAIN, listed) as app:
        run = Run(Path(work), spire_server, spire_agent, plugin, app, FaultProxy(app.devhost.url).start())
        try:
            passed = run_steps(run)
            if not passed:
                for process in run.processes():
                    print(f"--- {process.directory.name} log (last lines) ---\n{process.log_tail()}", flush=True)
        finally:
            for process in run.processes():
                process.stop()
            run.proxy.stop()
    print(f"e2e {'passed' if passed else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
