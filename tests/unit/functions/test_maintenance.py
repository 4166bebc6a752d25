"""The maintenance endpoints' query strings: read from the URL, strict, and checked before anything runs."""

import json

import azure.functions as func
import pytest

from functions import maintenance
from functions.http import query_parameters
from shared import app_context
from shared.errors import InvalidArgument, ResourceExhausted
from shared.maintenance import Failure, LastRefresh, RefreshReport, SweepReport
from tests.unit.tokens import MAINTAINER, SERVER_CALLER, bearer


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


def request(path: str, query: str, params: dict[str, str] | None = None, caller: str = MAINTAINER) -> func.HttpRequest:
    """A request as the host hands it over: ``params`` are its processed view of ``query``."""
    url = f"https://app.example.org/api/maintenance/{path}" + (f"?{query}" if query else "")
    return func.HttpRequest("POST", url, body=b"", headers=bearer(caller), params=params or {})


def call(handler, path: str, query: str, params: dict[str, str] | None = None, caller: str = MAINTAINER) -> tuple[int, dict]:
    response = handler(request(path, query, params, caller))
    return response.status_code, json.loads(response.get_body())


@pytest.mark.parametrize(
    "query, parameters",
    [
        ("", {}),
        ("dry_run=true", {"dry_run": "true"}),
        ("dry%5Frun=tru%65", {"dry_run": "true"}),  # percent-encoding means the same characters
    ],
)
def test_valid_queries(query, parameters):
    assert query_parameters(request("sweep", query), accepted=("dry_run",)) == parameters


@pytest.mark.parametrize(
    "query, message",
    [
        ("dry_run=", "query parameter dry_run has no value"),
        ("dry_run", "query parameter dry_run has no value"),
        ("dry_run=true&dry_run=false", "query parameter dry_run is given more than once"),
        ("dry_run=true&dry_run=true", "query parameter dry_run is given more than once"),
        ("code=a-function-key", 'unknown query parameter "code"'),  # no function keys: callers prove themselves with tokens
        ("dryrun=true", 'unknown query parameter "dryrun"'),
        ("DRY_RUN=true", 'unknown query parameter "DRY_RUN"'),
        ("dry_run=true&", 'unknown query parameter ""'),
        ("&dry_run=true", 'unknown query parameter ""'),
    ],
)
def test_unknown_repeated_and_empty_parameters_are_invalid(query, message):
    with pytest.raises(InvalidArgument, match=message):
        query_parameters(request("sweep", query), accepted=("dry_run",))


def test_an_unknown_parameter_is_named_but_its_value_is_not_echoed():
    with pytest.raises(InvalidArgument) as error:
        query_parameters(request("sweep", "dryrun=a-secret-value"), accepted=("dry_run",))
    assert error.value.message == 'unknown query parameter "dryrun": this endpoint accepts only dry_run'


def test_an_unknown_parameters_name_is_echoed_as_short_printable_ascii():
    with pytest.raises(InvalidArgument) as error:
        query_parameters(request("sweep", "%C3%A9%0A%22" + "x" * 1000 + "=1"), accepted=("dry_run",))
    assert error.value.message.startswith('unknown query parameter "\\u00e9\\n\\"xxx')
    assert error.value.message.isascii() and error.value.message.isprintable() and len(error.value.message) < 200


@pytest.mark.parametrize("query, dry_run", [("dry_run=false", False), ("dry_run=true", True)])
def test_sweep_runs_as_asked(manager, query, dry_run):
    status, report = call(maintenance.sweep_stale_keys_now, "sweep", query)
    assert status == 200 and report["dry_run"] is dry_run
    assert manager.runs == [("sweep", dry_run)]


def test_a_sweep_without_dry_run_is_400_saying_how_to_ask_and_nothing_runs(manager):
    status, body = call(maintenance.sweep_stale_keys_now, "sweep", "")
    assert status == 400 and body["error"]["code"] == "InvalidArgument"
    assert "dry_run=true" in body["error"]["message"] and "dry_run=false" in body["error"]["message"]
    assert manager.runs == []


@pytest.mark.parametrize(
    "query, params",
    [
        ("dry_run=", {}),  # what the host passes on for an empty value: nothing
        ("dry_run=true&dry_run=false", {"dry_run": "true,false"}),
        ("dryrun=true", {"dryrun": "true"}),
        ("dry_run=TRUE", {"dry_run": "TRUE"}),
        ("dry_run=yes", {"dry_run": "yes"}),
    ],
)
def test_a_malformed_sweep_query_is_400_and_nothing_runs(manager, query, params):
    status, body = call(maintenance.sweep_stale_keys_now, "sweep", query, params)
    assert status == 400 and body["error"]["code"] == "InvalidArgument"
    assert manager.runs == []


def test_refresh_takes_no_parameter(manager):
    status, body = call(maintenance.refresh_keys_now, "refresh", "dry_run=true", {"dry_run": "true"})
    assert status == 400 and body["error"]["code"] == "InvalidArgument" and manager.runs == []
    assert call(maintenance.refresh_keys_now, "refresh", "")[0] == 200
    assert manager.runs == [("list", None), ("refresh", None)]


@pytest.mark.parametrize(
    "handler, path, query",
    [
        (maintenance.refresh_keys_now, "refresh", ""),
        (maintenance.sweep_stale_keys_now, "sweep", "dry_run=false"),
    ],
)
def test_maintenance_needs_a_maintainer_and_nothing_runs_for_another_caller(manager, handler, path, query):
    status, body = call(handler, path, query, caller=SERVER_CALLER)  # a SPIRE server's identity, not a maintainer
    assert status == 403 and body["error"]["code"] == "PermissionDenied" and SERVER_CALLER in body["error"]["message"]
    response = handler(func.HttpRequest("POST", f"https://app.example.org/api/maintenance/{path}?{query}", body=b""))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert manager.runs == []


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
    assert report.failed_servers == ["spire-a"]


class PartlyFailingKeyManager(RecordingKeyManager):
    def refresh(self, listing=None) -> RefreshReport:
        return RefreshReport(refreshed=["a"], failed=[Failure("b", "Key Vault failed to answer (HTTP 503)")])

    def sweep(self, dry_run: bool = False) -> SweepReport:
        return SweepReport(dry_run, candidates=["c", "d"], deleted=["c"], failed=[Failure("d", "Key Vault failed to answer (HTTP 503)")])


@pytest.mark.parametrize(
    "timer, message",
    [
        (maintenance.refresh_keys, "refreshing 1 of 2 keys failed"),
        (maintenance.sweep_stale_keys, "deleting 1 stale keys failed"),
    ],
)
def test_a_timer_run_in_which_some_keys_failed_fails(monkeypatch, timer, message):
    monkeypatch.setattr(app_context, "servers_to_maintain", lambda: [None])
    monkeypatch.setattr(app_context, "key_manager_for_maintenance", lambda server_name: PartlyFailingKeyManager())
    monkeypatch.setattr(app_context, "_last_refresh", LastRefresh())
    with pytest.raises(maintenance.MaintenanceFailed, match=message):
        timer(func.TimerRequest())


def test_a_server_with_a_key_the_refresh_could_not_update_is_named_and_health_warns_until_a_run_covers_it(monkeypatch):
    managers = {None: PartlyFailingKeyManager(), "spire-a": RecordingKeyManager()}
    monkeypatch.setattr(app_context, "servers_to_maintain", lambda: list(managers))
    monkeypatch.setattr(app_context, "key_manager_for_maintenance", managers.__getitem__)
    monkeypatch.setattr(app_context, "_last_refresh", LastRefresh())
    assert maintenance.run_refresh().failed_servers == ["(default)"]
    assert app_context.last_refresh().failed_servers == ("(default)",)
    managers[None] = RecordingKeyManager()
    assert maintenance.run_refresh().failed_servers == []
    assert app_context.last_refresh().failed_servers == ()
