"""HTTP serving, the admin endpoint and the timer scheduler."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import azure.functions as func
from azure.functions.http import HttpResponseConverter

from shared.ncrontab import Schedule

from .functions import AppError, FunctionInfo, TimerRequest, Worker, host_trace_context, trigger_input
from .routes import RouteNotFound, Router, split_path
from .settings import SettingsError, resolve_references
from .wire import BadRequestBody, ClientLeft, ConnectionReader, HeadersTimeout, host_query_params, read_body

log = logging.getLogger("devhost")

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
# Kestrel's limits. KeepAliveTimeout: a connection waiting this long for a request's first byte
# is closed. RequestHeadersTimeout: from that first byte, the request line and headers must all
# arrive within this time, or the answer is a 408 and the connection closes. (Body reads here
# only time out when one read waits this long; Kestrel's MinRequestBodyDataRate is not modelled.)
KEEP_ALIVE_TIMEOUT_SECONDS = 130.0
HEADERS_TIMEOUT_SECONDS = 30.0
Headers = Iterable[tuple[str, str]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DevHost:
    """Serves one app's functions.

    Like ``func start``, auth levels are NOT enforced: every function can be called
    without a key; ``code`` query parameters and ``x-functions-key`` headers are
    accepted and simply passed on to the function like any other.
    """

    def __init__(self, functions: list[FunctionInfo], route_prefix: str = "api", server_timing: bool = False) -> None:
        self.functions = {f.name.casefold(): f for f in functions}
        self.worker = Worker()
        # The host sends no Server-Timing; a benchmark may ask for the function's own time in one.
        self.server_timing = server_timing
        self.route_prefix = route_prefix
        self.router: Router[FunctionInfo] = Router(route_prefix)
        self.timers: list[tuple[FunctionInfo, Schedule]] = []
        self.stopping = threading.Event()
        for fn in functions:
            try:
                if fn.is_http:
                    self.router.add(fn.route, fn.methods, fn)
                elif fn.trigger_type == "timerTrigger":
                    # Schedules may reference app settings (%NAME%), as in the host.
                    expression = resolve_references(str(fn.trigger.get("schedule") or ""))
                    self.timers.append((fn, Schedule.parse(expression)))
            except (ValueError, SettingsError) as exc:
                kind = "route" if fn.is_http else "schedule"
                raise AppError(f"function {fn.name!r}: invalid {kind}: {exc}") from None

    def describe(self, base_url: str) -> str:
        """The function list, laid out like ``func start`` prints it."""
        lines = ["Functions:", ""]
        for fn in self.functions.values():
            if fn.is_http:
                url = "/".join(p for p in (base_url, self.route_prefix, fn.route.strip("/")) if p)
                lines.append(f"        {fn.name}: [{','.join(fn.methods or ['*'])}] {url}")
            else:
                lines.append(f"        {fn.name}: {fn.trigger_type}")
            lines.append("")
        return "\n".join(lines)

    # --- HTTP -----------------------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler) -> None:
        started = time.perf_counter()
        method = req.command.upper()
        url = urlsplit(req.path)
        try:
            body = read_body(req.headers, req.rfile)
        except BadRequestBody as exc:  # Kestrel answers and closes the connection, saying so
            log.info("- %s %s -> %d: %s", method, url.path, self._send(req, exc.status, close=True), exc)
            return
        except (ClientLeft, TimeoutError, ConnectionError):
            req.close_connection = True
            log.info("- %s %s: the client left before sending its body; nothing ran", method, url.path)
            return
        parts = [unquote(p) for p in split_path(url.path)]
        if len(parts) == 3 and [p.casefold() for p in parts[:2]] == ["admin", "functions"]:
            name, status = "admin", self._admin(req, method, parts[2], body)
        else:
            name, status = self._http(req, method, url.path, url.query, body)
        # Only the path is logged: query strings may carry function keys.
        log.info("%s %s %s -> %d (%.1f ms)", name, method, url.path, status, (time.perf_counter() - started) * 1000)

    def _http(self, req: BaseHTTPRequestHandler, method: str, path: str, query: str, body: bytes) -> tuple[str, int]:
        try:
            match = self.router.resolve(method, path)
        except RouteNotFound:
            return "-", self._send(req, 404)  # the host's answer, for a method no function takes too
        fn = match.target
        host = req.headers.get("Host") or "{}:{}".format(*req.server.server_address[:2])
        request = func.HttpRequest(
            method=method,
            url=f"http://{host}{path}" + (f"?{query}" if query else ""),
            headers={k: ", ".join(req.headers.get_all(k) or []) for k in set(req.headers.keys())},
            params=host_query_params(query),
            route_params=match.params,
            body=body,
        )
        started = time.perf_counter()
        try:
            result = self.worker.invoke(fn, request, host_trace_context(request.headers))
        except Exception:
            log.exception("function %s failed", fn.name)
            return fn.name, self._send(req, 500)  # the host also answers 500 with no body
        # The function's own time, so that a benchmark can tell it from the hop and the host's.
        timing = [("Server-Timing", f"function;dur={(time.perf_counter() - started) * 1000:.3f}")]
        return fn.name, self._write_result(req, fn, result, timing if self.server_timing else [])

    def _write_result(self, req: BaseHTTPRequestHandler, fn: FunctionInfo, result: Any, timing: Headers) -> int:
        if isinstance(result, func.HttpResponse):
            # The worker's own encoding: it sets Content-Type, with a charset for text/* only.
            encoded = HttpResponseConverter.encode(result, expected_type=None).value
            headers = [(name, datum.value) for name, datum in encoded["headers"].items()]
            headers += [("Set-Cookie", morsel.OutputString()) for cookie in encoded["cookies"] or [] for morsel in cookie.values()]
            return self._send(req, result.status_code, [*headers, *timing], encoded["body"].value)
        if result is None:
            return self._send(req, 204, timing)
        if isinstance(result, (str, bytes)):
            body = result.encode() if isinstance(result, str) else result
            return self._send(req, 200, [("Content-Type", "text/plain; charset=utf-8"), *timing], body)
        log.error("function %s returned %s, expected func.HttpResponse", fn.name, type(result).__name__)
        return self._send(req, 500)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, headers: Headers = (), body: bytes = b"", close: bool = False) -> int:
        req.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                req.send_header(name, value)
        if close:
            req.send_header("Connection", "close")  # http.server then closes the connection too
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)
        return status

    def _error(self, req: BaseHTTPRequestHandler, status: int, code: str, message: str, headers: Headers = ()) -> int:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        return self._send(req, status, [("Content-Type", "application/json"), *headers], body)

    # --- non-HTTP functions ------------------------------------------------------------
    def _admin(self, req: BaseHTTPRequestHandler, method: str, name: str, body: bytes) -> int:
        """``POST /admin/functions/{name}`` with ``{"input": ...}``, as in the host's admin API."""
        if method != "POST":
            return self._error(req, 405, "MethodNotAllowed", "use POST", [("Allow", "POST")])
        fn = self.functions.get(name.casefold())
        if fn is None:
            return self._error(req, 404, "NotFound", f"no function named {name!r}")
        if fn.is_http:
            return self._error(req, 400, "BadRequest", f"{fn.name} is HTTP-triggered; use its route")
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return self._error(req, 400, "BadRequest", 'body must be JSON like {"input": ...}')
        value = payload.get("input") if isinstance(payload, dict) else None
        threading.Thread(target=self.run_logged, args=(fn, trigger_input(fn, value), "admin"), name=f"admin-{fn.name}", daemon=True).start()
        return self._send(req, 202)

    def run_logged(self, fn: FunctionInfo, value: Any, reason: str) -> bool:
        """Run a non-HTTP function, logging the outcome; never raises."""
        started = time.perf_counter()
        try:
            self.worker.invoke(fn, value)
        except Exception:
            log.exception("%s (%s) failed after %.1f ms", fn.name, reason, (time.perf_counter() - started) * 1000)
            return False
        log.info("%s (%s) succeeded in %.1f ms", fn.name, reason, (time.perf_counter() - started) * 1000)
        return True

    def start_timers(self) -> None:
        for fn, schedule in self.timers:
            threading.Thread(target=self._timer_loop, args=(fn, schedule), name=f"timer-{fn.name}", daemon=True).start()

    def _timer_loop(self, fn: FunctionInfo, schedule: Schedule) -> None:
        # Each run is waited for here, so a timer never overlaps itself (nor does it in the host).
        if fn.trigger.get("runOnStartup"):
            self.run_logged(fn, TimerRequest(past_due=False), "runOnStartup")
        due = schedule.next_after(_utcnow())
        log.info("%s: next run at %s", fn.name, due.isoformat())
        while not self.stopping.wait(max((due - _utcnow()).total_seconds(), 0)):
            if _utcnow() < due:  # woke a little early
                continue
            self.run_logged(fn, TimerRequest(past_due=False), "timer")
            due = schedule.next_after(max(due, _utcnow()))


class _Handler(BaseHTTPRequestHandler):
    server: DevHostServer
    # Keep-alive, as the Functions host (Kestrel) keeps connections: HTTP/1.0 would make every
    # client open a new connection, and this server a new thread, per request.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm the client's delayed ACK
    # then holds every response back by ~40 ms.
    disable_nagle_algorithm = True

    rfile: ConnectionReader  # type: ignore[assignment]

    def setup(self) -> None:
        super().setup()
        self.rfile = ConnectionReader(self.rfile, self.connection)  # type: ignore[arg-type]

    def handle_one_request(self) -> None:
        self.connection.settimeout(self.server.keep_alive_timeout)
        try:
            idle = not self.rfile.buffered.peek(1)  # waits for the next request's first byte
        except (TimeoutError, ConnectionError):
            idle = True
        if idle:
            self.close_connection = True
            return
        self.rfile.deadline = time.monotonic() + self.server.headers_timeout
        try:
            super().handle_one_request()
        except HeadersTimeout:
            self.close_connection = True
            self.connection.settimeout(self.server.headers_timeout)
            with contextlib.suppress(OSError):  # the client may be gone
                self.wfile.write(
                    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n"
                    b"Date: %s\r\n\r\n" % self.date_time_string().encode()
                )
            log.info("- the request's headers did not arrive within %.0f s -> 408", self.server.headers_timeout)

    def _dispatch(self) -> None:
        self.rfile.deadline = None  # the headers are in; each read of the body waits up to headers_timeout
        self.connection.settimeout(self.server.headers_timeout)
        self.server.devhost.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # DevHost.handle logs one line per request itself


for _method in HTTP_METHODS:
    setattr(_Handler, f"do_{_method}", _Handler._dispatch)


class DevHostServer(ThreadingHTTPServer):
    """A thread per connection, as the host serves each; the functions run on the DevHost's Worker."""

    daemon_threads = True
    request_queue_size = 1024  # the default of 5 resets connections when many clients connect at once

    def __init__(
        self,
        address: tuple[str, int],
        devhost: DevHost,
        keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT_SECONDS,
        headers_timeout: float = HEADERS_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(address, _Handler)
        self.devhost = devhost
        self.keep_alive_timeout = keep_alive_timeout
        self.headers_timeout = headers_timeout
