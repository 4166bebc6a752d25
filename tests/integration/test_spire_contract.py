"""SPIRE's KeyManager contract suite, run in-process against the plugin talking to the app on devhost.

The suite is SPIRE's own (github.com/spiffe/spire/pkg/server/plugin/keymanager/test at v1.13.3);
devtools/spire/contract gives it a fresh server name per case. Its plugins sign in to the local
Entra ID with the tests' server identity's secret, and the app lets that identity act as the fresh
names. Every subtest must run and pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

from devtools.spire.server import CLIENT_SECRET, entra_sign_in, plugin_data
from devtools.stack.services import ROOT
from tests.hermetic import start_app_host

# Four key types, each signing with its algorithms less the pairs Key Vault cannot sign, across
# GenerateKey, GetKey and GetKeys, plus the error cases: every subtest of the suite at v1.13.3.
CONTRACT_SUBTESTS = 81
# The suite's cases that create a KeyManager: GenerateKey, its "key id can be overwritten", GetKey, GetKeys.
CONTRACT_CASES = 4


def test_spire_keymanager_contract_suite_passes_against_the_app(app_env, entra_service, callers):
    go = shutil.which("go")
    assert go, "the Go toolchain is needed to run SPIRE's contract suite: put go on PATH"
    server_names = [f"contract-{uuid.uuid4().hex[:12]}" for _ in range(CONTRACT_CASES)]
    sign_in = entra_sign_in(entra_service, callers.api, callers.server, CLIENT_SECRET)
    devhost = start_app_host({**app_env, **callers.settings(server_names)})
    try:
        env = {
            **os.environ,
            **sign_in.env,
            "CONTRACT_PLUGIN_DATA": plugin_data(devhost.url, sign_in),
            "CONTRACT_TRUST_DOMAIN": app_env["TRUST_DOMAIN"],
            "CONTRACT_SERVER_NAMES": " ".join(server_names),
        }
        result = subprocess.run(
            [go, "test", "-count=1", "-json", "./contract"],
            cwd=ROOT / "devtools" / "spire",
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        devhost.stop()

    outcomes: dict[str, str] = {}
    output: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        test = event.get("Test")
        if test and event["Action"] in ("pass", "fail", "skip"):
            outcomes[test] = event["Action"]
        elif test and event["Action"] == "output":
            output.setdefault(test, []).append(event["Output"])
    subtests = {name: outcome for name, outcome in outcomes.items() if "/" in name}
    failed = [name for name, outcome in outcomes.items() if outcome != "pass"]
    passed = sum(outcome == "pass" for outcome in subtests.values())
    sys.stderr.write(
        f"SPIRE KeyManager contract: {len(subtests)} subtests run, {passed} passed "
        f"(and the suite's top-level test: {outcomes.get('TestKeyManagerContract')})\n"
    )
    details = "".join(line for name in failed for line in output.get(name, []))
    assert result.returncode == 0 and not failed, f"failed: {failed}\n{details}\n{result.stderr[-4000:]}"
    assert len(subtests) == CONTRACT_SUBTESTS, sorted(subtests)
