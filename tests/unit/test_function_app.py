"""The functions the app registers: names, routes, methods and auth levels, read from the app itself."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import azure.functions as func
import pytest
from azure_functions_runtime.bindings.meta import load_binding_registry
from azure_functions_runtime.functions import Registry

import function_app

# get_functions() may be called once per app: it indexes the blueprints.
FUNCTIONS = function_app.app.get_functions()

# Anonymous at the host: no function key opens anything; the key and maintenance functions prove
# each caller by its Entra ID token themselves, whatever runs in front of them.
EXPECTED = {
    "generate_key": ("keys", ["POST"], "anonymous"),
    "get_public_key": ("keys/{key_id}", ["GET"], "anonymous"),
    "get_public_keys": ("keys", ["GET"], "anonymous"),
    "sign_data": ("keys/{key_id}/sign", ["POST"], "anonymous"),
    "health": ("health", ["GET"], "anonymous"),
    "refresh_keys_now": ("maintenance/refresh", ["POST"], "anonymous"),
    "sweep_stale_keys_now": ("maintenance/sweep", ["POST"], "anonymous"),
    "openapi": ("openapi.json", ["GET"], "anonymous"),
}
# The key and maintenance functions run in a span under the host's (functions/telemetry.py).
TRACED = {
    "generate_key",
    "get_public_key",
    "get_public_keys",
    "sign_data",
    "refresh_keys",
    "sweep_stale_keys",
    "refresh_keys_now",
    "sweep_stale_keys_now",
}
# The values of the worker's protobuf enums its indexing compares bindings with (as devhost gives them).
WORKER_PROTOS = SimpleNamespace(BindingInfo=SimpleNamespace(inout=2, out=1, undefined=0))


def _http_triggers():
    for function in FUNCTIONS:
        trigger = function.get_trigger().get_dict_repr()
        if trigger["type"] == "httpTrigger":
            yield function.get_function_name(), trigger


def test_http_functions_declare_the_documented_routes_methods_and_auth_levels():
    declared = {
        name: (trigger["route"], [str(m.value if hasattr(m, "value") else m) for m in trigger["methods"]], trigger["authLevel"].value)
        for name, trigger in _http_triggers()
    }
    assert declared == EXPECTED


def test_the_app_asks_the_host_for_no_function_key():
    assert function_app.app.auth_level is func.AuthLevel.ANONYMOUS


def _timers() -> dict[str, dict]:
    return {
        function.get_function_name(): function.get_trigger().get_dict_repr()
        for function in FUNCTIONS
        if function.get_trigger().get_dict_repr()["type"] == "timerTrigger"
    }


def test_timers_run_on_the_documented_default_schedules():
    timers = _timers()
    assert {name: t["schedule"] for name, t in timers.items()} == {
        "refresh_keys": "0 0 */6 * * *",
        "sweep_stale_keys": "0 0 0 */2 * *",
    }
    assert all(t["runOnStartup"] is False and t["useMonitor"] is True for t in timers.values())


@pytest.mark.parametrize("setting, function", [("REFRESH_KEYS_SCHEDULE", "refresh_keys"), ("SWEEP_KEYS_SCHEDULE", "sweep_stale_keys")])
def test_timer_schedules_come_from_app_settings_at_import(setting, function):
    script = (
        "import json, function_app; print(json.dumps({f.get_function_name(): f.get_trigger().get_dict_repr().get('schedule') "
        "for f in function_app.app.get_functions()}))"
    )
    env = {**os.environ, setting: "0 */5 * * * *"}
    output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(output)[function] == "0 */5 * * * *"


def test_the_worker_passes_the_traced_functions_their_invocation_context():
    load_binding_registry()  # as the worker does before it indexes
    registry = Registry()
    with_context = {
        function.get_function_name()
        for function in FUNCTIONS
        if registry.add_indexed_function(function, protos=WORKER_PROTOS).requires_context
    }
    assert with_context == TRACED
