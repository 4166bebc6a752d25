"""Finding the app's functions and calling them the way the Python worker does."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import secrets
import sys
import textwrap
import threading
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest  # the concrete class (func.TimerRequest is abstract)
from azure_functions_runtime.bindings.meta import load_binding_registry
from azure_functions_runtime.functions import Registry
from azure_functions_runtime.loader import index_function_app
from azure_functions_runtime.utils.threadpool import _get_max_workers

from .requirements import DeployedOnly

# The values of the worker's protobuf enums that its indexing code compares bindings with
# (BindingInfo.Direction and BindingInfo.DataType in FunctionRpc.proto).
_WORKER_PROTOS = SimpleNamespace(BindingInfo=SimpleNamespace(inout=2, out=1, undefined=0))


class AppError(Exception):
    """The app cannot be loaded or served (the worker refuses it, bad route, bad schedule...)."""


@dataclass
class FunctionInfo:
    name: str
    func: Callable[..., Any]
    trigger: dict[str, Any]  # the trigger binding's get_dict_repr()
    directory: str = ""
    has_return: bool = True  # a $return binding (HTTP functions have one)
    requires_context: bool = False
    is_async: bool = False

    @property
    def trigger_type(self) -> str:
        return str(self.trigger.get("type"))

    @property
    def arg_name(self) -> str:
        return str(self.trigger["name"])

    @property
    def is_http(self) -> bool:
        return self.trigger_type == "httpTrigger"

    @property
    def route(self) -> str:
        return self.trigger.get("route") or self.name

    @property
    def methods(self) -> list[str] | None:
        methods = self.trigger.get("methods")
        return None if not methods else [str(getattr(m, "value", m)).upper() for m in methods]


# W3C Trace Context's traceparent, version 00: trace id, parent span id, flags; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"00-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-([0-9a-f]{2})")


@dataclass(frozen=True)
class TraceContext:
    """The trace context the host gives an invocation, under ``func.TraceContext``'s names."""

    trace_parent: str
    trace_state: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


def host_trace_context(headers: Mapping[str, str] | None = None) -> TraceContext:
    """The trace context of an invocation, as the host makes it: the host's own span, in the caller's
    trace when the request carries a valid ``traceparent`` (its ``tracestate`` kept), else in a new one."""
    headers = {name.lower(): value for name, value in (headers or {}).items()}
    incoming = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip())
    if incoming is None:
        return TraceContext(f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")
    trace_id, flags = incoming.groups()
    return TraceContext(f"00-{trace_id}-{secrets.token_hex(8)}-{flags}", headers.get("tracestate", ""))


@dataclass
class Context:
    """Enough of ``func.Context`` for functions that declare a ``context`` parameter."""

    function_name: str
    function_directory: str
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    thread_local_storage: threading.local = field(default_factory=threading.local)
    trace_context: TraceContext = field(default_factory=host_trace_context)
    retry_context: Any = None


def load_app(app_dir: Path, script: str = "function_app.py") -> list[FunctionInfo]:
    """Index the app in ``app_dir`` with the Python worker's own code: what it refuses, devhost refuses.

    Imports are limited to what a deployment holds (``requirements.txt``, the files ``.funcignore``
    does not leave out), for the whole life of the process.
    """
    if not (app_dir / script).is_file():
        raise AppError(f"no {script} in {app_dir}")
    sys.path.insert(0, str(app_dir))
    DeployedOnly(app_dir).install()
    registry = Registry()
    try:
        load_binding_registry()  # as the worker does on init, before indexing
        indexed = index_function_app(str(app_dir / script))
        functions = [_function_info(f, registry.add_indexed_function(f, protos=_WORKER_PROTOS), str(app_dir)) for f in indexed]
    except Exception as exc:  # the worker fails its start with whatever indexing raised
        raise AppError(f"the Python worker would refuse this app: {type(exc).__name__}: {exc}") from None
    for fn in functions:
        if not fn.has_return and _returns_a_value(fn.func):
            raise AppError(f"the Python worker would fail every run of {fn.name!r}: {_no_return_binding(fn)}")
    return functions


def _function_info(indexed: Any, worker_info: Any, directory: str) -> FunctionInfo:
    return FunctionInfo(
        indexed.get_function_name(),
        indexed.get_user_function(),
        indexed.get_trigger().get_dict_repr(),
        directory,
        worker_info.has_return,
        worker_info.requires_context,
        worker_info.is_async,
    )


def _no_return_binding(fn: FunctionInfo) -> str:
    return f"function {fn.name!r} without a $return binding returned a non-None value"  # the worker's words


def _returns_a_value(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is annotated to return something, or has a ``return <value>`` statement."""
    if typing.get_type_hints(function).get("return", type(None)) is not type(None):
        return True
    try:
        definition = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    except (OSError, TypeError):
        return False  # no source to read: the run itself tells (see invoke)
    return any(
        node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None)
        for node in _own_returns(definition)
    )


def _own_returns(node: ast.AST) -> Iterator[ast.Return]:
    """The return statements of a function, not of the functions or classes defined inside it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Return):
            yield child
        elif not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield from _own_returns(child)


def trigger_input(fn: FunctionInfo, payload: Any) -> Any:
    """Trigger argument for a non-HTTP invocation with admin-API ``input`` ``payload``."""
    if fn.trigger_type == "timerTrigger":
        return TimerRequest(past_due=False)
    if fn.trigger_type == "queueTrigger":
        body = payload if isinstance(payload, (str, bytes)) else "" if payload is None else str(payload)
        return func.QueueMessage(id=str(uuid.uuid4()), body=body)
    return payload  # other triggers get the raw input; enough for simple local runs


class Worker:
    """Runs functions where the Python worker runs them: sync ones on a thread pool of
    PYTHON_THREADPOOL_THREAD_COUNT threads (read now, as the worker reads it at its start; unset or
    invalid, ThreadPoolExecutor's default), coroutine functions on one event loop thread they share."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=_get_max_workers())
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True).start()

    def invoke(self, fn: FunctionInfo, trigger_value: Any, trace_context: TraceContext | None = None) -> Any:
        """Call the user function and wait for its result; ``trace_context``: the invocation's (a new trace by default)."""
        kwargs: dict[str, Any] = {fn.arg_name: trigger_value}
        if fn.requires_context:
            kwargs["context"] = Context(fn.name, fn.directory, trace_context=trace_context or host_trace_context())
        if fn.is_async:
            result = asyncio.run_coroutine_threadsafe(fn.func(**kwargs), self.loop).result()
        else:
            result = self.pool.submit(fn.func, **kwargs).result()
        if result is not None and not fn.has_return:
            raise RuntimeError(_no_return_binding(fn))
        return result
