"""Telemetry at the Key Vault adapter's boundary: a span per Key Vault operation (the Azure SDK's spans
of its HTTP requests, when tracing is on, are its children), and every request's latency and throttling.

Attributes name keys, versions, algorithms and statuses: never a digest, a signature or a token.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, StatusCode

from shared.errors import KeyManagerError
from shared.tracing import spans_recorded

_tracer = trace.get_tracer(__name__)
_meter = metrics.get_meter(__name__)
_request_duration = _meter.create_histogram(
    "keyvault.request.duration", unit="s", description="Key Vault requests, each attempt, by operation and status"
)
_throttled = _meter.create_counter(
    "keyvault.throttled", unit="{request}", description="Key Vault requests answered 429 (Too Many Requests)"
)


@dataclass
class _Operation:
    """One adapter operation's Key Vault requests, as RequestTelemetry saw them."""

    name: str
    requests: int = 0
    status_code: int | None = None


_operation: ContextVar[_Operation | None] = ContextVar("key_vault_operation", default=None)


def traced(operation: str, **attributes: str) -> AbstractContextManager[None]:
    """Run a Key Vault operation in its own span: its attributes, its last status and its retries, its outcome."""
    return _TracedOperation(_Operation(operation), attributes)


class _TracedOperation:
    """A Key Vault operation under way: current for RequestTelemetry, and in its span once spans are recorded."""

    def __init__(self, record: _Operation, attributes: dict[str, str]) -> None:
        self._record = record
        self._attributes = attributes
        self._span_scope: AbstractContextManager[Span] | None = None

    def __enter__(self) -> None:
        self._token = _operation.set(self._record)
        if spans_recorded():
            operation = self._record.name
            span_attributes = {"keyvault.operation": operation, **{f"keyvault.{name}": value for name, value in self._attributes.items()}}
            self._span_scope = _tracer.start_as_current_span(
                f"Key Vault {operation}", attributes=span_attributes, record_exception=False, set_status_on_exception=False
            )
            self._span = self._span_scope.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        try:
            if self._span_scope is not None:
                span, record = self._span, self._record
                if isinstance(error, KeyManagerError):
                    span.set_attribute("error.type", error.code)
                    span.set_status(StatusCode.ERROR, error.code)
                if record.status_code is not None:
                    span.set_attribute("http.response.status_code", record.status_code)
                span.set_attribute("keyvault.retries", max(0, record.requests - 1))
                self._span_scope.__exit__(kind, error, traceback)
        finally:
            _operation.reset(self._token)


class RequestTelemetry(HTTPPolicy[Any, Any]):
    """Each request to Key Vault, retries included: its latency in a histogram, a 429 in a counter, and
    its status and count on the adapter operation's span. The client places it right after the retry
    policy: each attempt is timed with its authentication (a cached token, or a challenge answered)."""

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        record = _operation.get()
        attributes: dict[str, str | int] = {
            "keyvault.operation": record.name if record is not None else "other",
            "http.request.method": request.http_request.method,
        }
        started = time.monotonic()
        try:
            response = self.next.send(request)
        except Exception as error:
            attributes["error.type"] = type(error).__name__
            _request_duration.record(time.monotonic() - started, attributes)
            raise
        status = response.http_response.status_code
        attributes["http.response.status_code"] = status
        _request_duration.record(time.monotonic() - started, attributes)
        if status == 429:
            _throttled.add(1, {"keyvault.operation": attributes["keyvault.operation"]})
        if record is not None:
            record.requests += 1
            record.status_code = status
        return response
