"""checkov scans the template: no failed check, and every skipped check says why in the file.

checkov's Bicep parser does not read `extension` statements, so the files that use a Bicep extension
(the Microsoft Graph resources) are left out of the scan; tests below show that checkov still cannot
parse them and has no check for any of their resource types.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.infra import template

# Installed by `make install` from requirements-infra.txt, apart from the test tools (see the Makefile).
CHECKOV = template.ROOT / ".tools" / "infra-checkers" / "bin" / "checkov"


def files_with_extensions() -> list[str]:
    return [file for file, parse in template.parsed().items() if parse.get("extensions")]


def checkov(*arguments: str) -> subprocess.CompletedProcess:
    assert CHECKOV.exists(), f"{CHECKOV.relative_to(template.ROOT)} is missing: run make install"
    return subprocess.run([str(CHECKOV), *arguments], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def scan() -> dict:
    left_out = [argument for file in files_with_extensions() for argument in ("--skip-path", f"{re.escape(file)}$")]
    completed = checkov(
        # --soft-fail: failed checks are asserted below, by name; a crash still exits non-zero.
        "--directory", str(template.INFRA), "--framework", "bicep", "--skip-download", "--soft-fail", "--output", "json",
        *left_out,
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


def test_only_the_microsoft_graph_module_is_left_out_and_checkov_could_check_nothing_in_it():
    assert files_with_extensions() == ["api-application.bicep"]
    graph_types = {resource["type"] for resource in template.parsed()["api-application.bicep"]["resources"].values()}
    assert graph_types and all(kind.startswith("Microsoft.Graph/") for kind in graph_types)
    listing = checkov("--list", "--framework", "bicep")
    assert listing.returncode == 0, listing.stderr[-4000:]
    checked_kinds = {row.split("|")[4].strip() for row in listing.stdout.splitlines() if re.match(r"\|\s*\d+\s*\|", row)}
    assert "Microsoft.Web/sites" in checked_kinds, "checkov's list of checks was not read"
    assert not {kind for kind in checked_kinds if kind.startswith("Microsoft.Graph/")}


def test_checkov_still_cannot_parse_the_extension_statement():
    """When it can, the module belongs in the scan like every other file."""
    completed = checkov(
        "--file", str(template.INFRA / "api-application.bicep"), "--framework", "bicep", "--skip-download", "--soft-fail",
        "--output", "json",
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    report = json.loads(completed.stdout)
    assert report["summary"]["parsing_errors"] == 1 and report["summary"]["resource_count"] == 0
