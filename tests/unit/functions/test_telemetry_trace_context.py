"""The trace context a call brings is the caller's to choose: it must not decide whether the app records
the call, nor put the caller's text into the app's log."""

import json
import logging
from types import SimpleNamespace

import azure.functions as func
import pytest
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from functions import keys, telemetry
from shared import app_context
from shared.app_context import SpireServers
from shared.server_ids import FixedServerDirectory
from tests.unit import telemetry as recorded
from tests.unit.fakes import InMemoryVault
from tests.unit.tokens import bearer

TRACE_ID, HOST_SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
CALLERS_TEXT = "forged-log-line-from-an-anonymous-caller"


@pytest.fixture(autouse=True)
def servers():
    app_context.install_servers(SpireServers("example.org", FixedServerDirectory("0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"), InMemoryVault()))
    recorded.reset()
    yield
    app_context.install_servers(None)


def anonymous_sign(trace_parent: str, trace_state: str = "") -> int:
    request = func.HttpRequest(
        "POST", "http://localhost/api/keys/a/sign", body=json.dumps({}).encode(), headers={}, route_params={"key_id": "a"}
    )
    context = SimpleNamespace(
        invocation_id="id", trace_context=SimpleNamespace(trace_parent=trace_parent, trace_state=trace_state, attributes={})
    )
    return keys.sign_data(request, context=context).status_code


def test_a_caller_that_says_not_sampled_is_still_recorded_when_telemetry_goes_over_otlp():
    not_sampled = TraceContextTextMapPropagator().extract({"traceparent": f"00-{TRACE_ID}-{HOST_SPAN_ID}-00"})
    decision = telemetry.otlp_sampler({}).should_sample(not_sampled, int(TRACE_ID, 16), "sign_data")
    assert decision.decision is Decision.RECORD_AND_SAMPLE
    assert telemetry.otlp_sampler({"OTEL_TRACES_SAMPLER": "traceidratio"}) is None  # the operator's choice stands


def test_an_invalid_tracestate_puts_none_of_the_callers_text_in_the_log(caplog):
    caplog.set_level(logging.WARNING)
    assert anonymous_sign(f"00-{TRACE_ID}-{HOST_SPAN_ID}-01", f"a=b,{CALLERS_TEXT} " * 3) == 401
    assert not [record for record in caplog.records if CALLERS_TEXT in record.getMessage()]


def test_an_over_long_key_id_is_shortened_on_the_span():
    request = func.HttpRequest(
        "POST", "http://localhost/api/keys", body=json.dumps({"key_id": "k" * 4000, "key_type": "ec-p256"}).encode(), headers=bearer()
    )
    assert keys.generate_key(request, context=SimpleNamespace(invocation_id="id", trace_context=None)).status_code == 400
    assert 0 < len(str(recorded.span("generate_key").attributes["keymanager.key_id"])) < 200
