"""The telemetry of the key and maintenance functions: a span per operation in the caller's trace, its
attributes, the metrics, the invocation on every log line, and never a token, a digest or a signature."""

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import azure.functions as func
import pytest
from opentelemetry.trace import StatusCode

from functions import keys, maintenance, telemetry
from shared import app_context
from shared.app_context import SpireServers
from shared.errors import ServerStopped
from shared.maintenance import Failure, SweepReport
from shared.server_ids import FixedServerDirectory
from tests.unit import telemetry as recorded
from tests.unit.fakes import InMemoryVault
from tests.unit.tokens import MAINTAINER, bearer

ROOT = Path(__file__).resolve().parents[3]
SERVER_ID = "0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"
TRACE_ID, HOST_SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
INVOCATION_ID = "5e8f3b0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
DATA = b"the data SPIRE asks to sign"


@pytest.fixture(autouse=True)
def servers():
    app_context.install_servers(SpireServers("example.org", FixedServerDirectory(SERVER_ID), InMemoryVault()))
    recorded.reset()
    yield
    app_context.install_servers(None)


def invocation() -> SimpleNamespace:
    """The ``context`` the worker passes: the invocation's id, and the host's span as the trace context."""
    trace_context = SimpleNamespace(trace_parent=f"00-{TRACE_ID}-{HOST_SPAN_ID}-01", trace_state="", attributes={})
    return SimpleNamespace(invocation_id=INVOCATION_ID, trace_context=trace_context)


def call(handler, body=None, method="POST", headers=None, **route_params) -> tuple[int, dict]:
    request = func.HttpRequest(
        method,
        "http://localhost/api/keys",
        body=json.dumps(body).encode() if body else b"",
        headers=headers or bearer(),
        route_params=route_params,
    )
    response = handler(request, context=invocation())
    return response.status_code, json.loads(response.get_body())


def sign() -> tuple[int, dict]:
    body = {"data": base64.b64encode(hashlib.sha256(DATA).digest()).decode(), "hash_algorithm": "SHA256"}
    return call(keys.sign_data, body, key_id="a")


def test_a_sign_is_one_span_under_the_hosts_with_its_server_key_algorithm_and_outcome():
    call(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"})
    recorded.reset()
    assert sign()[0] == 200
    span = recorded.span("sign_data")
    assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (TRACE_ID, HOST_SPAN_ID)
    assert dict(span.attributes) == {
        "faas.invocation_id": INVOCATION_ID,
        "keymanager.server_name": "(default)",
        "keymanager.key_id": "a",
        "keymanager.hash_algorithm": "SHA256",
        "keymanager.pss": False,
        "keymanager.outcome": "OK",
        "http.response.status_code": 200,
    }
    assert recorded.recorded_metrics()["keymanager.signs"] == [({"keymanager.server_name": "(default)", "keymanager.outcome": "OK"}, 1)]


def test_a_generate_is_counted_by_server_and_outcome_with_its_key_type():
    assert call(keys.generate_key, {"key_id": "a", "key_type": "ec-p384"})[0] == 200
    span = recorded.span("generate_key")
    assert (span.attributes["keymanager.key_id"], span.attributes["keymanager.key_type"]) == ("a", "ec-p384")
    assert recorded.recorded_metrics()["keymanager.generates"] == [({"keymanager.server_name": "(default)", "keymanager.outcome": "OK"}, 1)]


def test_a_refused_sign_is_an_error_span_counted_with_its_error_code():
    assert sign()[0] == 404
    span = recorded.span("sign_data")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes["keymanager.outcome"], span.attributes["error.type"], span.attributes["http.response.status_code"]) == (
        "NotFound",
        "NotFound",
        404,
    )
    assert recorded.recorded_metrics()["keymanager.signs"] == [
        ({"keymanager.server_name": "(default)", "keymanager.outcome": "NotFound"}, 1)
    ]


def test_no_attribute_of_any_span_holds_the_token_the_digest_or_the_signature():
    headers = bearer()
    call(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"}, headers=headers)
    digest = hashlib.sha256(DATA).digest()
    status, body = call(
        keys.sign_data, {"data": base64.b64encode(digest).decode(), "hash_algorithm": "SHA256"}, headers=headers, key_id="a"
    )
    assert status == 200
    token = headers["Authorization"].removeprefix("Bearer ")
    signature = base64.b64decode(body["signature"])
    secrets = [token, *_encodings(digest), *_encodings(signature)]
    values = [str(value) for span in recorded.spans() for value in span.attributes.values()]
    assert values and not [value for value in values for secret in secrets if secret in value]


def _encodings(data: bytes) -> list[str]:
    return [base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode().rstrip("="), data.hex()]


def test_every_log_line_of_an_invocation_carries_its_id_and_server(caplog):
    telemetry.configure({})  # no exporter: only the invocation's attributes on log records
    caplog.set_level(logging.INFO)
    call(keys.generate_key, {"key_id": "a", "key_type": "ec-p256"})
    lines = [record for record in caplog.records if record.name == "azure_kv_keymanager.audit"]
    assert lines and all(
        (getattr(line, "faas.invocation_id"), getattr(line, "keymanager.server_name")) == (INVOCATION_ID, "(default)") for line in lines
    )


def test_a_stopped_servers_calls_are_counted_with_the_reason(monkeypatch):
    def stopped(server_name=None, trust_domain=None):
        raise ServerStopped("the blob holds another server id")

    monkeypatch.setattr(app_context, "key_manager", stopped)
    assert sign()[0] == 503
    assert recorded.recorded_metrics()["keymanager.servers.stopped"] == [
        ({"keymanager.server_name": "(default)", "keymanager.stop_reason": "id_conflict"}, 1)
    ]


def test_a_sweep_records_its_run_and_its_keys(monkeypatch):
    report = SweepReport(False, candidates=["k1", "k2", "k3"], deleted=["k1", "k2"], failed=[Failure("k3", "throttled")])
    monkeypatch.setattr(app_context, "key_manager_for_maintenance", lambda server_name: SimpleNamespace(sweep=lambda dry_run: report))
    request = func.HttpRequest("POST", "https://app.example.org/api/maintenance/sweep?dry_run=false", body=b"", headers=bearer(MAINTAINER))
    assert maintenance.sweep_stale_keys_now(request, context=invocation()).status_code == 200
    span = recorded.span("sweep")
    assert (span.attributes["keymanager.sweep.deleted"], span.attributes["keymanager.sweep.failed_keys"]) == (2, 1)
    measured = recorded.recorded_metrics()
    assert measured["keymanager.maintenance.runs"] == [({"keymanager.operation": "sweep", "keymanager.outcome": "failed"}, 1)]
    assert sorted((attributes["keymanager.result"], count) for attributes, count in measured["keymanager.maintenance.keys"]) == [
        ("candidates", 3),
        ("deleted", 2),
        ("failed_keys", 1),
    ]


def test_called_without_a_context_a_function_starts_a_trace():
    keys.get_public_keys(func.HttpRequest("GET", "http://localhost/api/keys", body=b"", headers=bearer()))
    span = recorded.span("get_public_keys")
    assert span.parent is None and "faas.invocation_id" not in span.attributes


@pytest.mark.parametrize(
    "environ, exporter",
    [
        ({}, None),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000"}, "azure_monitor"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        (
            {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
            "azure_monitor",
        ),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}, None),
    ],
)
def test_the_exporter_is_the_one_the_app_settings_name(environ, exporter):
    assert telemetry.chosen_exporter(environ) == exporter


def test_without_telemetry_settings_the_app_loads_no_opentelemetry_sdk_nor_exporter():
    heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "azure.monitor")
    script = f"import sys, function_app; print(sorted(name for name in sys.modules if name.startswith({heavy!r})))"
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_no_span_is_started_until_a_tracer_provider_is_installed_and_every_span_is_recorded_after():
    # A process of its own: this one has the tests' provider installed, and a process installs one only once.
    script = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from functions import telemetry
from shared import key_vault_telemetry

started = []
start = trace.ProxyTracer.start_as_current_span
trace.ProxyTracer.start_as_current_span = lambda tracer, name, **options: started.append(name) or start(tracer, name, **options)

@telemetry.traced("sign_data")
def sign():
    telemetry.note(key_id="a")
    with key_vault_telemetry.traced("sign"):
        pass

sign()
before = list(started)
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
sign()
spans = {span.name: dict(span.attributes) for span in exporter.get_finished_spans()}
print(json.dumps([before, started, spans["sign_data"]]))
"""
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True, check=True)
    before, started, sign_span = json.loads(done.stdout)
    assert before == [] and started == ["sign_data", "Key Vault sign"]
    assert sign_span == {"keymanager.key_id": "a", "keymanager.outcome": "OK"}


def test_a_call_refused_before_its_server_is_known_counts_under_an_unknown_server():
    assert call(keys.sign_data, {"data": "AA==", "hash_algorithm": "SHA256"}, headers={"Accept": "*/*"}, key_id="a")[0] == 401
    assert recorded.recorded_metrics()["keymanager.signs"] == [
        ({"keymanager.server_name": "(unknown)", "keymanager.outcome": "Unauthenticated"}, 1)
    ]
