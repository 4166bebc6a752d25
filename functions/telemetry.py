"""OpenTelemetry in the worker: configured once, a span per operation, the app's metrics, and the
invocation and the server on every log line.

Only opentelemetry-api is imported here: without a configured SDK every call is a no-op. ``configure``
sets up the SDK once, as Microsoft documents it for Python on Flex Consumption: the Azure Monitor
distro when APPLICATIONINSIGHTS_CONNECTION_STRING is set, otherwise OTLP when an ``OTEL_EXPORTER_OTLP_*``
endpoint is set, otherwise nothing. The exporters are imported only then.

Attributes name servers, key ids, key types, algorithms and outcomes; never a token, a digest, a
signature or a secret.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import typing
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import azure.functions as func
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.errors import KeyManagerError, ServerStopped, shortened
from shared.naming import server_label
from shared.tracing import spans_recorded

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "azure_kv_keymanager"
# Span and log attributes (Application Insights shows them as custom dimensions).
INVOCATION_ID = "faas.invocation_id"
SERVER_NAME = "keymanager.server_name"
KEY_ID = "keymanager.key_id"
KEY_TYPE = "keymanager.key_type"
HASH_ALGORITHM = "keymanager.hash_algorithm"
OUTCOME = "keymanager.outcome"
STOP_REASON = "keymanager.stop_reason"
MAINTENANCE_RESULT = "keymanager.result"
OK = "OK"
UNKNOWN_SERVER = "(unknown)"
# Stop reasons: the server's id blob holds another id; two plugin processes call as one server name.
ID_CONFLICT = "id_conflict"
OVERLAPPING_INSTANCES = "overlapping_instances"

# Where the worker configures Azure Monitor itself (the app then leaves it alone), and where the exporters go.
WORKER_CONFIGURES_AZURE_MONITOR = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
OTLP_ENDPOINTS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)

tracer = trace.get_tracer(INSTRUMENTATION_NAME)
meter = metrics.get_meter(INSTRUMENTATION_NAME)
signs = meter.create_counter("keymanager.signs", unit="{sign}", description="Signs, by server and outcome")
generates = meter.create_counter("keymanager.generates", unit="{key}", description="Key generations, by server and outcome")
stopped_servers = meter.create_counter(
    "keymanager.servers.stopped",
    unit="{call}",
    description="Calls of a stopped server: its id blob holds another id, or two processes share its name",
)
maintenance_runs = meter.create_counter("keymanager.maintenance.runs", unit="{run}", description="Refresh and sweep runs, by outcome")
maintained_keys = meter.create_counter(
    "keymanager.maintenance.keys", unit="{key}", description="Keys a refresh or sweep refreshed, deleted or failed on, by result"
)
_COUNTED_OPERATIONS = {"sign_data": signs, "generate_key": generates}


@dataclass
class Invocation:
    """What the operation's span, metrics and log lines say about the invocation running now."""

    operation: str
    invocation_id: str | None
    server_name: str | None = None  # as logs name it (server_label); None until the caller is authorized as one
    outcome: str = OK
    span: Span | None = None  # the operation's span; None when spans go nowhere (``spans_recorded``)

    @property
    def server(self) -> str:
        """The server for metrics: refused before it was known, the call counts under UNKNOWN_SERVER."""
        return self.server_name or UNKNOWN_SERVER


_invocation: ContextVar[Invocation | None] = ContextVar("invocation", default=None)
_configured = False
_Function = TypeVar("_Function", bound=Callable[..., Any])


AZURE_MONITOR, OTLP = "azure_monitor", "otlp"


def chosen_exporter(environ: Mapping[str, str]) -> str | None:
    """Where the app's telemetry goes (AZURE_MONITOR, OTLP), or None: nowhere, or the worker exports it already."""
    if environ.get(WORKER_CONFIGURES_AZURE_MONITOR, "").lower() == "true":
        return None  # the worker ran configure_azure_monitor itself; a second one would export everything twice
    if environ.get(CONNECTION_STRING):
        return AZURE_MONITOR
    if any(environ.get(name) for name in OTLP_ENDPOINTS):
        return OTLP
    return None


def configure(environ: Mapping[str, str] = os.environ) -> str | None:
    """Set up the OpenTelemetry SDK once for the process, with the exporter ``chosen_exporter`` names."""
    global _configured
    if _configured:
        return None
    _configured = True
    logging.setLogRecordFactory(_record_factory(logging.getLogRecordFactory()))
    exporter = chosen_exporter(environ)
    if exporter == AZURE_MONITOR:
        from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 (hundreds of ms: only when used)

        # Every key call traced (the distro's default keeps 5 traces a second, which anonymous calls could
        # fill), unless the operator chose a sampler with OTEL_TRACES_SAMPLER.
        configure_azure_monitor(**({} if environ.get("OTEL_TRACES_SAMPLER") else {"sampling_ratio": 1.0}))
    elif exporter == OTLP:
        _configure_otlp()
    return exporter


def otlp_sampler(environ: Mapping[str, str]) -> Sampler | None:
    """Every call sampled, whatever the caller's trace flags say (a caller's "not sampled" must not hide its
    call), unless the operator chose a sampler with OTEL_TRACES_SAMPLER (None: the SDK reads it)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased  # noqa: PLC0415

    return None if environ.get("OTEL_TRACES_SAMPLER") else ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)


def _configure_otlp() -> None:
    """Traces, metrics and logs to the OTLP endpoint the standard OTEL_EXPORTER_OTLP_* variables name."""
    # Imported here: they load the SDK and protobuf, which an app without telemetry never needs.
    from azure.core.settings import settings  # noqa: PLC0415
    from opentelemetry import _logs  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: PLC0415
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    tracer_provider = TracerProvider(sampler=otlp_sampler(os.environ))
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(logger_provider)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
    # The Azure SDK's own spans (one per Key Vault request, with its status and resend count); the
    # Azure Monitor distro turns them on itself.
    settings.tracing_enabled = True


def _record_factory(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Log records that carry the invocation and the server as attributes, which the exporters send as such."""

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = make_record(*args, **kwargs)
        invocation = _invocation.get()
        if invocation is not None:
            setattr(made, INVOCATION_ID, invocation.invocation_id)
            if invocation.server_name is not None:
                setattr(made, SERVER_NAME, invocation.server_name)
        return made

    return record


def traced(operation: str) -> Callable[[_Function], _Function]:
    """Run the function in a span named ``operation``, child of the trace context the Functions host passes.

    The wrapper takes the invocation's ``context`` (the worker passes it to a function that declares
    one): the worker runs synchronous functions on its thread pool, where the trace context it read is
    not current, so the span's parent is read from ``context.trace_context``. Called without one, as
    tests call a handler, the span starts a trace.
    """

    def decorate(function: _Function) -> _Function:
        @functools.wraps(function)
        def wrapper(*args: Any, context: func.Context | None = None, **kwargs: Any) -> Any:
            invocation = Invocation(operation, getattr(context, "invocation_id", None))
            token = _invocation.set(invocation)
            try:
                if not spans_recorded():
                    return _run(function, args, kwargs, invocation)
                with tracer.start_as_current_span(operation, context=_parent(context), record_exception=False) as span:
                    invocation.span = span
                    if invocation.invocation_id is not None:
                        span.set_attribute(INVOCATION_ID, invocation.invocation_id)
                    result = _run(function, args, kwargs, invocation)
                    if isinstance(result, func.HttpResponse):
                        span.set_attribute("http.response.status_code", result.status_code)
                    return result
            finally:
                _invocation.reset(token)

        # The worker (and devhost) read the parameters to decide what to pass: the function's own, and context.
        signature = inspect.signature(function)
        context_parameter = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=func.Context)
        wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), context_parameter])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**typing.get_type_hints(function), "context": func.Context}
        return wrapper  # type: ignore[return-value]

    return decorate


def _parent(context: func.Context | None) -> Any:
    trace_context = getattr(context, "trace_context", None)
    traceparent = getattr(trace_context, "trace_parent", None)
    if not traceparent:
        return None
    # The caller's tracestate is left out: the app reads none of it, and parsing it logs the caller's text.
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _run(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], invocation: Invocation) -> Any:
    """The function's result; its outcome on the invocation's span, if any, and in the operation's counter."""
    try:
        return function(*args, **kwargs)
    except BaseException as error:
        note_outcome(error)
        raise
    finally:
        span = invocation.span
        if span is not None:
            span.set_attribute(OUTCOME, invocation.outcome)
            if invocation.outcome != OK:
                span.set_status(StatusCode.ERROR, invocation.outcome)
        counter = _COUNTED_OPERATIONS.get(invocation.operation)
        if counter is not None:
            counter.add(1, {SERVER_NAME: invocation.server, OUTCOME: invocation.outcome})


def _span_of(invocation: Invocation | None) -> Span | None:
    """Where to note attributes: the invocation's span, or outside one the current span."""
    return invocation.span if invocation is not None else trace.get_current_span()


def note_server(server_name: str | None) -> None:
    """The server the invocation acts as: on its span, its metrics and its log lines from now on."""
    invocation = _invocation.get()
    if invocation is not None:
        invocation.server_name = server_label(server_name)
    span = _span_of(invocation)
    if span is not None:
        span.set_attribute(SERVER_NAME, server_label(server_name))


def note(**attributes: str | bool) -> None:
    """Attributes of the operation's span: ``key_id``, ``key_type``, ``hash_algorithm``, ``pss`` (never a secret or a digest).

    Noted before the key id is validated, so a text is shortened as error messages shorten it.
    """
    span = _span_of(_invocation.get())
    if span is None:
        return
    for name, value in attributes.items():
        span.set_attribute(f"keymanager.{name}", shortened(value) if isinstance(value, str) else value)


def note_outcome(error: BaseException) -> None:
    """The invocation failed with ``error``: its code is the outcome (the span records the class, not the message)."""
    invocation = _invocation.get()
    code = error.code if isinstance(error, KeyManagerError) else KeyManagerError.code
    if invocation is not None:
        invocation.outcome = code
        if isinstance(error, ServerStopped):
            note_stopped(ID_CONFLICT)
    span = _span_of(invocation)
    if span is not None:
        span.set_attribute("error.type", type(error).__name__)


def note_stopped(reason: str) -> None:
    """The invocation's server is stopped (ID_CONFLICT) or refused a key for sharing its name (OVERLAPPING_INSTANCES)."""
    invocation = _invocation.get()
    stopped_servers.add(1, {SERVER_NAME: invocation.server if invocation is not None else UNKNOWN_SERVER, STOP_REASON: reason})


def note_maintenance(operation: str, failed: bool, **key_counts: int) -> None:
    """A refresh or sweep run's results: the run's outcome, and how many keys ended each way."""
    maintenance_runs.add(1, {"keymanager.operation": operation, OUTCOME: "failed" if failed else OK})
    span = trace.get_current_span()
    for result, count in key_counts.items():
        span.set_attribute(f"keymanager.{operation}.{result}", count)
        if count:
            maintained_keys.add(count, {"keymanager.operation": operation, MAINTENANCE_RESULT: result})
