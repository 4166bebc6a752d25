"""Health: one dependency check per instance per 30 s; settings and stopped servers reported at once."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import pytest

from functions import health
from shared import app_context
from shared.app_context import SpireServers
from shared.errors import Unavailable
from shared.maintenance import LastRefresh, RefreshReport
from shared.server_ids import FixedServerDirectory
from tests.unit.fakes import InMemoryVault


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(health, "_clock", clock)
    monkeypatch.setattr(health, "_last", None)
    return clock


@pytest.fixture
def vault() -> InMemoryVault:
    fake = InMemoryVault()
    app_context.install_servers(SpireServers("example.org", FixedServerDirectory("server"), fake))
    return fake


def call() -> tuple[int, dict]:
    response = health.health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    return response.status_code, json.loads(response.get_body())


def test_a_burst_costs_one_key_vault_request_per_interval(vault, clock):
    assert [call() for _ in range(100)] == [(200, {"status": "ok"})] * 100
    assert vault.names() == ["probe"]
    clock.now += 29.999  # the README's interval: 30 s
    call()
    assert vault.names() == ["probe"]
    clock.now += 0.001
    call()
    assert vault.names() == ["probe", "probe"]


def test_a_refresh_that_missed_servers_is_a_warning_beside_an_ok_that_names_none(vault, clock, monkeypatch):
    last_refresh = LastRefresh()
    monkeypatch.setattr(app_context, "_last_refresh", last_refresh)
    last_refresh.record(RefreshReport(failed_servers=["spire-a", "spire-b"]))
    status, body = call()
    assert status == 200 and body["status"] == "ok"
    assert [warning["code"] for warning in body["warnings"]] == ["refresh_incomplete"]
    assert "2 server" in body["warnings"][0]["message"] and "spire-a" not in json.dumps(body)
    last_refresh.record(RefreshReport())
    assert call() == (200, {"status": "ok"})  # the cached check, without the warning once a run covered every server


def test_a_failed_check_is_reused_too(vault, clock, monkeypatch):
    def refuse():
        vault.calls.append(("probe",))
        raise Unavailable("Key Vault refused this app's identity")

    monkeypatch.setattr(vault, "probe", refuse)
    answers = [call() for _ in range(10)]
    assert answers[0][0] == 503 and answers[0][1]["dependency"] == "key_vault"
    assert all(answer == answers[0] for answer in answers) and vault.names() == ["probe"]


def test_invalid_settings_are_reported_on_every_call_and_never_cached(clock, monkeypatch):
    monkeypatch.delenv("TRUST_DOMAIN", raising=False)
    monkeypatch.setenv("KEY_VAULT_URI", "https://localhost:1")
    for _ in range(3):
        status, body = call()
        assert status == 503 and body["dependency"] == "settings" and "TRUST_DOMAIN" in body["error"]["message"]


def test_a_stopped_server_is_reported_at_once_despite_a_recent_ok(clock, monkeypatch):
    fake = InMemoryVault()
    directory = FixedServerDirectory("server")
    servers = SpireServers("example.org", directory, fake)
    app_context.install_servers(servers)
    assert call()[0] == 200
    servers.serve("a")
    stopped = servers._server("a")[0]
    stopped.conflict = Unavailable("the server id blob x holds another server id")
    status, body = call()
    assert status == 503 and body["dependency"] == "blob_storage" and "another server id" in body["error"]["message"]
    assert "blob x" not in body["error"]["message"]  # which blob (and so which server) only the log says
    assert fake.names() == ["probe"]


def test_an_unreadable_id_blob_is_reported_without_naming_it(clock, vault, monkeypatch, caplog):
    blob_failure = "could not read the server id blob spire-secret-container/team-a/key-metadata from Blob storage"

    def unreadable() -> None:
        raise Unavailable(blob_failure)

    monkeypatch.setattr(app_context, "check_default_server", unreadable)
    status, body = call()
    assert status == 503 and body["dependency"] == "blob_storage"
    assert "spire-secret-container" not in json.dumps(body) and "key-metadata" not in json.dumps(body)
    assert blob_failure in caplog.text  # the operator's log names it


def test_caller_settings_that_refuse_every_call_make_health_503(clock, vault, monkeypatch):
    monkeypatch.setattr(app_context, "_callers", None)
    monkeypatch.setenv("SPIRE_SERVER_IDENTITIES", '{"00000000-0000-0000-0000-000000000001": [""]}')  # valid: the tenant is what is missing
    monkeypatch.delenv("ENTRA_TENANT_ID", raising=False)
    status, body = call()
    assert status == 503 and body["dependency"] == "settings" and "ENTRA_TENANT_ID" in body["error"]["message"]


class HangingProbe:
    """A Key Vault probe that hangs until released, so that other callers come during the check."""

    def __init__(self, vault: InMemoryVault) -> None:
        self.vault = vault
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        self.vault.calls.append(("probe",))
        self.entered.set()
        assert self.release.wait(10), "the test never released the probe"


def _call_during_a_hanging_check(vault: InMemoryVault, monkeypatch) -> tuple[tuple[int, dict], tuple[int, dict]]:
    """(the answer of a call made while another caller's check hangs, the checking caller's answer)."""
    probe = HangingProbe(vault)
    monkeypatch.setattr(vault, "probe", probe)
    with ThreadPoolExecutor(1) as checker:
        checking = checker.submit(call)
        assert probe.entered.wait(10)
        during = call()  # never waits for the hanging check: were it to, the probe would time out first
        probe.release.set()
        return during, checking.result()


def test_a_second_caller_during_a_cold_instances_check_answers_at_once_that_it_is_under_way(vault, clock, monkeypatch):
    during, checked = _call_during_a_hanging_check(vault, monkeypatch)
    assert during == (503, {"status": "unavailable", "dependency": "not_checked_yet",
                            "error": {"code": "Unavailable", "message": health.CHECK_UNDER_WAY}})
    assert checked == (200, {"status": "ok"})
    assert vault.names() == ["probe"]  # one check at a time
    assert call() == (200, {"status": "ok"})


def test_a_second_caller_during_a_due_check_answers_at_once_with_the_last_result(vault, clock, monkeypatch):
    assert call() == (200, {"status": "ok"})
    clock.now += health.CHECK_INTERVAL_SECONDS
    during, checked = _call_during_a_hanging_check(vault, monkeypatch)
    assert during == (200, {"status": "ok"}) and checked == (200, {"status": "ok"})
    assert vault.names() == ["probe", "probe"]
