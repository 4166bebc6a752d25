"""checkov scans the template: no failed check, and every skipped check says why in the file."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.infra import template

# Installed by `make install` from requirements-infra.txt, apart from the test tools (see the Makefile).
CHECKOV = template.ROOT / ".tools" / "infra-checkers" / "bin" / "checkov"


@pytest.fixture(scope="module")
def scan() -> dict:
    assert CHECKOV.exists(), f"{CHECKOV.relative_to(template.ROOT)} is missing: run make install"
    completed = subprocess.run(
        # --soft-fail: failed checks are asserted below, by name; a crash still exits non-zero.
        [str(CHECKOV), "--directory", str(template.INFRA), "--framework", "bicep", "--skip-download", "--soft-fail", "--output", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    report = json.loads(completed.stdout)
    assert isinstance(report, dict) and report["check_type"] == "bicep", "checkov found no Bicep to scan"
    return report


def test_checkov_parses_every_file_and_fails_no_check(scan):
    results = scan["results"]
    assert results["parsing_errors"] == []
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in results["failed_checks"]]
    assert failed == []
    assert scan["summary"]["passed"] > 0


def test_checkov_checks_every_file_that_declares_a_checked_kind_of_resource(scan):
    results = scan["results"]
    checked = [c for kind in ("passed_checks", "skipped_checks") for c in results[kind]]
    checked_types = {c["resource"].rsplit(".", 1)[0] for c in checked}
    files = {c["file_path"].lstrip("/") for c in checked}
    expected = {
        file
        for file, parse in template.parsed().items()
        if any(r["type"] in checked_types and not r["existing"] for r in parse.get("resources", {}).values())
    }
    assert expected <= files
    assert {"Microsoft.Web/sites", "Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"} <= checked_types


def test_every_skipped_check_carries_its_reason(scan):
    for check in scan["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5 and reason != "No comment provided", f"{check['check_id']} on {check['resource']}: {reason!r}"
