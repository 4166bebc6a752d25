"""Whether the app's spans go anywhere: once a tracer provider is installed (by ``configure``, by the
Functions worker's Azure Monitor set-up, or by a test), and never before.

Without one, OpenTelemetry's API makes every span a no-op, yet starting one, making it current and
ending it still costs a few microseconds; a key call would start several. The app starts none then.
"""

from __future__ import annotations

from opentelemetry import trace

_installed = False


def spans_recorded() -> bool:
    """Whether a tracer provider is installed; it stays so, since OpenTelemetry sets one only once."""
    global _installed
    if not _installed:
        _installed = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _installed
