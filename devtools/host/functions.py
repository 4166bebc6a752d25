"""Finding the app's functions and calling them the way the Python worker does."""
from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import azure.functions as func
from azure.functions.timer import TimerRequest  # the concrete class (func.TimerRequest is abstract)


class AppError(Exception):
    """The app cannot be loaded or served (no FunctionApp, bad route, bad schedule...)."""


@dataclass
class FunctionInfo:
    name: str
    func: Callable[..., Any]
    trigger: dict[str, Any]  # the trigger binding's get_dict_repr()
    directory: str = ""

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
    def methods(self) -> Optional[list[str]]:
        methods = self.trigger.get("methods")
        return None if not methods else [str(getattr(m, "value", m)).upper() for m in methods]


@dataclass
class Context:
    """Enough of ``func.Context`` for functions that declare a ``context`` parameter."""
    function_name: str
    function_directory: str
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    thread_local_storage: threading.local = field(default_factory=threading.local)
    trace_context: Any = None
    retry_context: Any = None


def load_app(app_dir: Path, module: str = "function_app") -> func.FunctionApp:
    """Import ``module`` from ``app_dir`` and return its FunctionApp instance."""
    if not (app_dir / f"{module}.py").is_file():
        raise AppError(f"no {module}.py in {app_dir}")
    sys.path.insert(0, str(app_dir))
    mod = importlib.import_module(module)
    apps = [v for v in vars(mod).values() if isinstance(v, func.FunctionApp)]
    if not apps:
        raise AppError(f"{mod.__file__} defines no azure.functions.FunctionApp instance")
    app = getattr(mod, "app", None)
    return app if isinstance(app, func.FunctionApp) else apps[0]


def discover(app: func.FunctionApp, directory: str = "") -> list[FunctionInfo]:
    return [FunctionInfo(f.get_function_name(), f.get_user_function(),
                         f.get_trigger().get_dict_repr(), directory)
            for f in app.get_functions()]


def trigger_input(fn: FunctionInfo, payload: Any) -> Any:
    """Trigger argument for a non-HTTP invocation with admin-API ``input`` ``payload``."""
    if fn.trigger_type == "timerTrigger":
        return TimerRequest(past_due=False)
    if fn.trigger_type == "queueTrigger":
        body = payload if isinstance(payload, (str, bytes)) else "" if payload is None else str(payload)
        return func.QueueMessage(id=str(uuid.uuid4()), body=body)
    return payload  # other triggers get the raw input; enough for simple local runs


def invoke(fn: FunctionInfo, trigger_value: Any) -> Any:
    """Call the user function; coroutine functions run on their own event loop."""
    kwargs: dict[str, Any] = {fn.arg_name: trigger_value}
    if "context" in inspect.signature(fn.func).parameters and fn.arg_name != "context":
        kwargs["context"] = Context(fn.name, fn.directory)
    result = fn.func(**kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return result
