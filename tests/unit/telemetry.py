"""In-memory OpenTelemetry for the tests: the SDK's span exporter and metric reader, installed once
per process as the global providers (OpenTelemetry allows one), and emptied for each test."""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPANS = InMemorySpanExporter()
# Deltas: each read holds what was recorded since the one before.
METRICS = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA})
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))


def reset() -> None:
    SPANS.clear()
    METRICS.get_metrics_data()


def spans() -> list[ReadableSpan]:
    return list(SPANS.get_finished_spans())


def span(name: str) -> ReadableSpan:
    (found,) = [span for span in spans() if span.name == name]
    return found


def descendants(ancestor: ReadableSpan) -> list[ReadableSpan]:
    """The spans under ``ancestor``, at any depth, in the order they ended."""
    below = {ancestor.context.span_id}
    found = []
    for candidate in sorted(spans(), key=lambda span: -(span.end_time or 0)):  # parents end after their children
        if candidate.parent is not None and candidate.parent.span_id in below:
            below.add(candidate.context.span_id)
            found.append(candidate)
    return sorted(found, key=lambda span: span.end_time or 0)


def recorded_metrics() -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """What each metric recorded since the last read: per data point, its attributes, and its sum (a counter) or count (a histogram)."""
    data = METRICS.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(
                    (dict(point.attributes or {}), point.count if hasattr(point, "count") else point.value)
                    for point in metric.data.data_points
                )
    return found
