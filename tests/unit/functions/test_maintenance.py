"""The maintenance endpoints' query strings: read from the URL, strict, and checked before anything runs."""

import json

import azure.functions as func
import pytest

from functions import maintenance
from shared import app_context
from shared.errors import InvalidArgument, ResourceExhausted
from shared.maintenance import RefreshReport, SweepReport


class RecordingKeyManager:
    def __init__(self) -> None:
        self.runs: list[tuple[str, bool | None]] = []

    def list_vault(self) -> list:
        self.runs.append(("list", None))
        return []

    def refresh(self, listing=None) -> RefreshReport:
        self.runs.append(("refresh", None))
        return RefreshReport()

    def sweep(self, dry_run: bool = False) -> SweepReport:
        self.runs.append(("sweep", dry_run))
        return SweepReport(dry_run)


@pytest.fixture
def manager(monkeypatch) -> RecordingKeyManager:
    recording = RecordingKeyManager()
    monkeypatch.setattr(app_context, "servers_to_maintain", lambda: [None])  # the default server alone
    monkeypatch.setattr(app_context, "key_manager_for_maintenance", lambda server_name: recording)
    return recording


def request(path: str, query: str, params: dict[str, str] | None = None) -> func.HttpRequest:
    """A request as the host hands it over: ``params`` are its processed view of ``query``."""
    url = f"https://app.example.org/api/maintenance/{path}" + (f"?{query}" if query else "")
    return func.HttpRequest("POST", url, body=b"", params=params or {})


def call(handler, path: str, query: str, params: dict[str, str] | None = None) -> tuple[int, dict]:
    response = handler(request(path, query, params))
    return response.status_code, json.loads(response.get_body())


@pytest.mark.parametrize("query, parameters", [
    ("", {}),
    ("dry_run=true", {"dry_run": "true"}),
    ("code=a-function-key&dry_run=false", {"dry_run": "false"}),  # the function key is left out
    ("dry%5Frun=tru%65", {"dry_run": "true"}),  # percent-encoding means the same characters
])
def test_valid_queries(query, parameters):
    assert maintenance.query_parameters(request("sweep", query), accepted=("dry_run",)) == parameters


@pytest.mark.parametrize("query, message", [
    ("dry_run=", "query parameter dry_run has no value"),
    ("dry_run", "query parameter dry_run has no value"),
    ("dry_run=true&dry_run=false", "query parameter dry_run is given more than once"),
    ("dry_run=true&dry_run=true", "query parameter dry_run is given more than once"),
    ("code=a&code=b", "query parameter code is given more than once"),
    ("dryrun=true", "unknown query parameter"),
    ("DRY_RUN=true", "unknown query parameter"),
    ("dry_run=true&", "unknown query parameter"),
    ("&dry_run=true", "unknown query parameter"),
])
def test_unknown_repeated_and_empty_parameters_are_invalid(query, message):
    with pytest.raises(InvalidArgument, match=message):
        maintenance.query_parameters(request("sweep", query), accepted=("dry_run",))


def test_an_unknown_parameter_is_not_echoed():
    with pytest.raises(InvalidArgument) as error:
        maintenance.query_parameters(request("sweep", "a-secret-value=1"), accepted=("dry_run",))
    assert "a-secret-value" not in error.value.message and "dry_run" in error.value.message


@pytest.mark.parametrize("query, dry_run", [("", False), ("dry_run=false", False), ("dry_run=true", True)])
def test_sweep_runs_as_asked(manager, query, dry_run):
    status, report = call(maintenance.sweep_stale_keys_now, "sweep", query)
    assert status == 200 and report["dry_run"] is dry_run
    assert manager.runs == [("sweep", dry_run)]


@pytest.mark.parametrize("query, params", [
    ("dry_run=", {}),  # what the host passes on for an empty value: nothing
    ("dry_run=true&dry_run=false", {"dry_run": "true,false"}),
    ("dryrun=true", {"dryrun": "true"}),
    ("dry_run=TRUE", {"dry_run": "TRUE"}),
    ("dry_run=yes", {"dry_run": "yes"}),
])
def test_a_malformed_sweep_query_is_400_and_nothing_runs(manager, query, params):
    status, body = call(maintenance.sweep_stale_keys_now, "sweep", query, params)
    assert status == 400 and body["error"]["code"] == "InvalidArgument"
    assert manager.runs == []


def test_refresh_takes_no_parameter_but_the_function_key(manager):
    status, body = call(maintenance.refresh_keys_now, "refresh", "dry_run=true", {"dry_run": "true"})
    assert status == 400 and body["error"]["code"] == "InvalidArgument" and manager.runs == []
    assert call(maintenance.refresh_keys_now, "refresh", "code=a-function-key")[0] == 200
    assert manager.runs == [("list", None), ("refresh", None)]


class ThrottledKeyManager(RecordingKeyManager):
    def refresh(self, listing=None) -> RefreshReport:
        raise ResourceExhausted("Key Vault is throttling this app", retry_after=30)


def test_a_named_server_that_fails_its_refresh_does_not_stop_the_others(monkeypatch):
    managers = {None: RecordingKeyManager(), "spire-a": ThrottledKeyManager(), "spire-b": RecordingKeyManager()}
    monkeypatch.setattr(app_context, "servers_to_maintain", lambda: list(managers))
    monkeypatch.setattr(app_context, "key_manager_for_maintenance", managers.__getitem__)
    report = maintenance.refresh_used_servers()
    assert managers[None].runs == [("list", None), ("refresh", None)]
    assert managers["spire-b"].runs == [("refresh", None)]  # on the default server's listing
    assert [failure.key_name for failure in report.failed] == ["(server spire-a)"]
