"""End to end: run ``python -m devtools.host`` on a small sample app and talk HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[3]

BLUEPRINT = '''
import asyncio, json, os, threading
import azure.functions as func

bp = func.Blueprint()


def as_json(data, status=200):
    return func.HttpResponse(json.dumps(data), status_code=status, mimetype="application/json")


@bp.route(route="keys/{key_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_key(req: func.HttpRequest) -> func.HttpResponse:
    return as_json({"function": "get_key", "key_id": req.route_params["key_id"], "url": req.url,
                    "params": dict(req.params), "key_header": req.headers.get("x-functions-key")})


@bp.route(route="keys/special", methods=["GET"])
def get_special(req: func.HttpRequest) -> func.HttpResponse:
    return as_json({"function": "get_special"})


@bp.route(route="keys/{key_id}", methods=["DELETE"])
def delete_key(req: func.HttpRequest) -> func.HttpResponse:
    return as_json({"function": "delete_key", "key_id": req.route_params["key_id"]})


@bp.route(route="keys/{key_id}/sign", methods=["POST"])
def sign(req: func.HttpRequest) -> func.HttpResponse:
    response = as_json({"key_id": req.route_params["key_id"], "echo": req.get_json()}, 201)
    response.headers["X-Sample"] = "yes"
    return response


@bp.route(route="wait/{ms:int}", methods=["GET"])
async def wait_async(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(int(req.route_params["ms"]) / 1000)
    return func.HttpResponse("waited " + req.route_params["ms"])


MEETINGS = {}
MEETINGS_LOCK = threading.Lock()


@bp.route(route="meet/{group}/{parties:int}")
def meet(req: func.HttpRequest) -> func.HttpResponse:
    """"met" once `parties` calls of the group run at once; "alone" if they never do within ?wait= s."""
    with MEETINGS_LOCK:
        barrier = MEETINGS.setdefault(req.route_params["group"], threading.Barrier(int(req.route_params["parties"])))
    try:
        barrier.wait(timeout=float(req.params["wait"]))
    except threading.BrokenBarrierError:
        return func.HttpResponse("alone")
    return func.HttpResponse("met")


LOOPS = []


@bp.route(route="loops")
async def loops(req: func.HttpRequest) -> func.HttpResponse:
    LOOPS.append(asyncio.get_running_loop())  # kept, so that no later loop can take its id
    return func.HttpResponse(str(len({id(loop) for loop in LOOPS})))


@bp.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom from sample")


@bp.route(route="lazy-import")
def lazy_import(req: func.HttpRequest) -> func.HttpResponse:
    import requests  # installed here, but requirements.txt does not deploy it
    return func.HttpResponse(requests.__name__)


@bp.route(route="settings")
def settings(req: func.HttpRequest) -> func.HttpResponse:
    return as_json({name: os.environ.get(name) for name in ("FROM_FILE", "BOTH")})


@bp.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=False)
def tick(timer: func.TimerRequest) -> None:
    with open(os.environ["TICK_FILE"], "a") as out:
        out.write(f"tick past_due={timer.past_due}\\n")
'''

FUNCTION_APP = """
import azure.functions as func
from sample_bp import bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)
"""


def write_app(app_dir: Path, route_prefix: str = "api") -> Path:
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "sample_bp.py").write_text(textwrap.dedent(BLUEPRINT))
    (app_dir / "function_app.py").write_text(textwrap.dedent(FUNCTION_APP))
    (app_dir / "requirements.txt").write_text("azure-functions\n")
    (app_dir / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": route_prefix}}}))
    (app_dir / "local.settings.json").write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "FUNCTIONS_WORKER_RUNTIME": "python",
                    "TICK_FILE": str(app_dir / "ticks.txt"),
                    "TICK_SCHEDULE": "0 0 */6 * * *",
                    "FROM_FILE": "file",
                    "BOTH": "file",
                },
            }
        )
    )
    return app_dir


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class Devhost:
    """A ``python -m devtools.host`` subprocess; stdout is read line by line, stderr goes to a file."""

    def __init__(self, app_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.stderr_path = app_dir / f"devhost-{time.monotonic_ns()}.err"
        full_env = {
            **os.environ,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.host", "--app-dir", str(app_dir), "--port", "0", *args],
                cwd=REPO_ROOT,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))
            self.lines.put(line)

    def wait_ready(self, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith("devhost ready "):
                self.base = line.split()[-1]
                return self.base
        self.proc.kill()
        pytest.fail(f"devhost never became ready; stderr:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def host(app_dir: Path):
    devhost = Devhost(
        app_dir,
        "--no-timers",
        "--keep-alive-timeout",
        "1",
        "--headers-timeout",
        "2",
        env={"BOTH": "env", "PYTHON_THREADPOOL_THREAD_COUNT": "2"},
    )
    devhost.wait_ready()
    yield devhost
    assert devhost.stop() == 0


def test_ready_line_and_function_list(host: Devhost):
    assert host.base.startswith("http://127.0.0.1:") and not host.base.endswith(":0")
    assert wait_for(lambda: any("tick: timerTrigger" in line for line in host.stdout))
    assert f"        get_key: [GET] {host.base}/api/keys/{{key_id}}" in host.stdout
    assert f"        sign: [POST] {host.base}/api/keys/{{key_id}}/sign" in host.stdout


def test_route_params_query_and_keys(host: Devhost):
    r = requests.get(f"{host.base}/api/keys/a%20b?code=secret-code&x=1&x=2&empty=&X=3", headers={"x-functions-key": "secret-header"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"  # no charset added
    body = r.json()
    assert body["function"] == "get_key" and body["key_id"] == "a b"
    # As the host passes them: repeated names joined, whatever their case; empty values dropped.
    assert body["params"] == {"code": "secret-code", "x": "1,2,3"}
    assert body["url"] == f"{host.base}/api/keys/a%20b?code=secret-code&x=1&x=2&empty=&X=3"
    assert body["key_header"] == "secret-header"  # keys are not checked, just passed on
    assert requests.get(f"{host.base}/API/Keys/abc").json()["key_id"] == "abc"
    # one log line per invocation, without the query string (it may hold keys)
    assert wait_for(lambda: "get_key GET /api/keys/a%20b -> 200" in host.stderr())
    assert "secret-code" not in host.stderr()


def test_literal_route_wins_and_method_fallback(host: Devhost):
    assert requests.get(f"{host.base}/api/keys/special").json() == {"function": "get_special"}
    assert requests.delete(f"{host.base}/api/keys/special").json() == {"function": "delete_key", "key_id": "special"}


def test_post_json_echo(host: Devhost):
    r = requests.post(f"{host.base}/api/keys/k1/sign", json={"digest": "abc", "n": [1, 2]})
    assert r.status_code == 201 and r.headers["X-Sample"] == "yes"
    assert r.json() == {"key_id": "k1", "echo": {"digest": "abc", "n": [1, 2]}}


def test_async_function_and_int_constraint(host: Devhost):
    r = requests.get(f"{host.base}/api/wait/10")
    assert (r.status_code, r.text) == (200, "waited 10")
    assert requests.get(f"{host.base}/api/wait/ten").status_code == 404


def test_unknown_routes_and_undeclared_methods_are_empty_404s(host: Devhost):
    for response in (
        requests.get(f"{host.base}/api/nothing/here"),
        requests.get(f"{host.base}/keys/abc"),  # missing the api prefix
        requests.put(f"{host.base}/api/keys/abc"),
    ):  # GET and DELETE are declared there
        assert (response.status_code, response.content) == (404, b"")
        assert "Allow" not in response.headers


def test_text_responses_keep_their_charset(host: Devhost):
    r = requests.get(f"{host.base}/api/wait/1")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"


def raw_exchange(base: str, request: bytes, close_early: bool = False) -> bytes:
    """Send ``request`` bytes as they are; the answer, or b"" when devhost closes without one."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        if close_early:
            return b""
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_chunked_request_bodies_are_read(host: Devhost):
    chunked = b'{"digest": "ab"}'
    request = (
        b"POST /api/keys/k1/sign HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n" + b"%x\r\n%s\r\n" % (len(chunked), chunked) + b"0\r\n\r\n"
    )
    head, _, body = raw_exchange(host.base, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 ")
    assert json.loads(body) == {"key_id": "k1", "echo": {"digest": "ab"}}


@pytest.mark.parametrize("length, status", [(b"-1", 400), (b"abc", 400), (b"99999999999999999999999", 400), (b"104857601", 413)])
def test_unusable_content_length_is_answered_at_once_closing_and_nothing_runs(host: Devhost, length: bytes, status: int):
    path = f"/api/keys/bad-length-{status}/sign"
    request = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: ".encode() + length + b"\r\n\r\n{}"
    head = raw_exchange(host.base, request).partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0].startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close" in head[1:]  # as Kestrel says when it closes
    assert wait_for(lambda: f"- POST {path} -> {status}" in host.stderr())
    assert f"sign POST {path}" not in host.stderr()


def test_a_client_leaving_mid_body_runs_nothing(host: Devhost):
    request = b"POST /api/keys/gone/sign HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}"
    raw_exchange(host.base, request, close_early=True)
    assert wait_for(lambda: "- POST /api/keys/gone/sign: the client left" in host.stderr())
    assert "sign POST /api/keys/gone/sign" not in host.stderr()


def test_idle_connections_are_closed_after_the_keep_alive_timeout(host: Devhost):
    host_name, port = host.base.removeprefix("http://").split(":")
    with socket.create_connection((host_name, int(port)), timeout=30) as idle:
        assert idle.recv(1) == b""  # devhost hangs up (--keep-alive-timeout 1); without it recv times out


def test_headers_arriving_steadily_but_past_their_deadline_get_a_408(host: Devhost):
    """--headers-timeout 2 is one deadline for the request line and headers, not a wait per read."""
    host_name, port = host.base.removeprefix("http://").split(":")
    request = b"GET /api/keys/trickled HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 60 + b"\r\n\r\n"
    with socket.create_connection((host_name, int(port)), timeout=30) as conn:
        for byte in request:  # a byte every 0.1 s: 9 s in all, and never a read waiting 2 s
            conn.sendall(bytes([byte]))
            if select.select([conn], [], [], 0.1)[0]:
                break  # devhost has answered
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n")
    assert head[0] == b"HTTP/1.1 408 Request Timeout" and b"Connection: close" in head
    assert wait_for(lambda: "the request's headers did not arrive within 2 s -> 408" in host.stderr())


def test_a_normal_request_answers_while_300_clients_sit_idle(app_dir: Path):
    devhost = Devhost(app_dir, "--no-timers")  # the default read timeout: the idle clients stay
    try:
        host_name, port = devhost.wait_ready().removeprefix("http://").split(":")
        idle = [socket.create_connection((host_name, int(port)), timeout=30) for _ in range(300)]
        try:
            assert requests.get(f"{devhost.base}/api/keys/abc", timeout=30).json()["key_id"] == "abc"
        finally:
            for conn in idle:
                conn.close()
    finally:
        assert devhost.stop() == 0


def test_exception_gives_500_and_traceback(host: Devhost):
    r = requests.get(f"{host.base}/api/boom")
    assert (r.status_code, r.content) == (500, b"")
    assert wait_for(lambda: "RuntimeError: kaboom from sample" in host.stderr())
    assert wait_for(lambda: "boom GET /api/boom -> 500" in host.stderr())


def test_sync_functions_run_at_most_python_threadpool_thread_count_at_once(host: Devhost):
    """As on the worker's thread pool: with PYTHON_THREADPOOL_THREAD_COUNT=2, two calls run together, a third waits."""

    def meet(group: str, parties: int, wait: int) -> str:
        return requests.get(f"{host.base}/api/meet/{group}/{parties}?wait={wait}", timeout=60).text

    with ThreadPoolExecutor(3) as callers:
        assert list(callers.map(meet, ["pair"] * 2, [2] * 2, [30] * 2)) == ["met"] * 2
        # The third call only starts once the first two have given up (after 2 s), so no three ever meet.
        assert list(callers.map(meet, ["trio"] * 3, [3] * 3, [2] * 3)) == ["alone"] * 3


def test_async_functions_share_one_event_loop(host: Devhost):
    first, second = (requests.get(f"{host.base}/api/loops", timeout=30).text for _ in range(2))
    assert (first, second) == ("1", "1")


def test_local_settings_applied_environment_wins(host: Devhost):
    assert requests.get(f"{host.base}/api/settings").json() == {"FROM_FILE": "file", "BOTH": "env"}


def test_admin_runs_timer_function(host: Devhost, app_dir: Path):
    ticks = app_dir / "ticks.txt"
    r = requests.post(f"{host.base}/admin/functions/TICK", json={"input": ""})
    assert (r.status_code, r.content) == (202, b"")
    assert wait_for(lambda: ticks.exists() and "tick past_due=False" in ticks.read_text())
    assert wait_for(lambda: "tick (admin) succeeded" in host.stderr())
    assert requests.post(f"{host.base}/admin/functions/tick").status_code == 202  # no body is fine
    assert requests.post(f"{host.base}/admin/functions/nope", json={}).status_code == 404
    r = requests.post(f"{host.base}/admin/functions/get_key", json={})
    assert r.status_code == 400 and "route" in r.json()["error"]["message"]


def test_timers_fire_on_schedule(tmp_path: Path):
    app_dir = write_app(tmp_path, route_prefix="")
    # The environment beats local.settings.json for the %TICK_SCHEDULE% reference too.
    devhost = Devhost(app_dir, env={"TICK_SCHEDULE": "*/1 * * * * *"})
    try:
        base = devhost.wait_ready()
        assert requests.get(f"{base}/keys/abc").json()["key_id"] == "abc"  # empty routePrefix
        ticks = app_dir / "ticks.txt"
        assert wait_for(lambda: ticks.exists() and ticks.read_text().count("tick") >= 2, timeout=5)
    finally:
        assert devhost.stop() == 0


def test_invalid_schedule_fails_at_start(app_dir: Path):
    devhost = Devhost(app_dir, env={"TICK_SCHEDULE": "61 * * * * *"})
    assert devhost.proc.wait(timeout=15) == 1
    assert "'tick'" in devhost.stderr() and "schedule" in devhost.stderr()


def test_imports_outside_requirements_fail_when_run_too(host: Devhost):
    assert requests.get(f"{host.base}/api/lazy-import").status_code == 500
    assert wait_for(lambda: "ModuleNotFoundError: No module named 'requests'" in host.stderr())


def refused(app_dir: Path) -> str:
    """devhost's complaint about the app in ``app_dir``; it must not start."""
    devhost = Devhost(app_dir)
    assert devhost.proc.wait(timeout=30) == 1
    return devhost.stderr()


def starts(app_dir: Path) -> None:
    """devhost serves the app in ``app_dir``, then stops cleanly."""
    devhost = Devhost(app_dir, "--no-timers")
    devhost.wait_ready()
    assert devhost.stop() == 0


def write_function_app(tmp_path: Path, source: str, requirements: str = "azure-functions\n") -> Path:
    (tmp_path / "function_app.py").write_text(textwrap.dedent(source))
    (tmp_path / "requirements.txt").write_text(requirements)
    return tmp_path


def test_a_parameter_not_named_as_its_binding_is_refused(tmp_path: Path):
    app_dir = write_function_app(
        tmp_path,
        """
        import azure.functions as func
        app = func.FunctionApp()

        @app.route(route="x")
        def handler(request: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("x")
    """,
    )
    assert (
        "cannot load the handler function: the following parameters are declared in Python but not in the function definition"
    ) in refused(app_dir)


def test_two_function_apps_are_refused(tmp_path: Path):
    app_dir = write_function_app(
        tmp_path,
        """
        import azure.functions as func
        app = func.FunctionApp()
        second = func.FunctionApp()
    """,
    )
    assert "More than one FunctionApp or other top level function app instances are defined." in refused(app_dir)


@pytest.mark.parametrize(
    "definition",
    [
        "def tick(timer: func.TimerRequest):\n    if timer.past_due:\n        return 'late'",
        "def tick(timer: func.TimerRequest) -> str:\n    ...",
    ],
)
def test_a_timer_function_returning_a_value_is_refused(tmp_path: Path, definition: str):
    app_dir = write_function_app(
        tmp_path,
        f"""
import azure.functions as func
app = func.FunctionApp()

@app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
{definition}
""",
    )
    assert "function 'tick' without a $return binding returned a non-None value" in refused(app_dir)


def test_a_timer_function_returning_nothing_starts(tmp_path: Path):
    app_dir = write_function_app(
        tmp_path,
        """
import azure.functions as func
app = func.FunctionApp()

@app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    def helper():
        return "nested functions may return values"
    return None
""",
    )
    starts(app_dir)


APP_IMPORTING_REQUESTS = """
    import azure.functions as func
    import requests
    app = func.FunctionApp()
"""


def test_an_import_only_requirements_dev_provides_is_refused(tmp_path: Path):
    app_dir = write_function_app(tmp_path, APP_IMPORTING_REQUESTS)
    (app_dir / "requirements-dev.txt").write_text("-r requirements.txt\nrequests\n")
    complaint = refused(app_dir)
    assert "ModuleNotFoundError: No module named 'requests'" in complaint
    assert "Cannot find module. Please check the requirements.txt file for the missing module." in complaint


def test_an_import_requirements_provides_starts(tmp_path: Path):
    app_dir = write_function_app(tmp_path, APP_IMPORTING_REQUESTS, "azure-functions>=2\nrequests  # HTTP\n")
    starts(app_dir)


APP_IMPORTING_ITS_TOOLS = """
    import azure.functions as func
    from tools.clock import now
    app = func.FunctionApp()
"""


def test_an_import_of_an_app_file_that_funcignore_leaves_out_is_refused(tmp_path: Path):
    app_dir = write_function_app(tmp_path, APP_IMPORTING_ITS_TOOLS)
    (app_dir / "tools").mkdir()
    (app_dir / "tools" / "__init__.py").write_text("")
    (app_dir / "tools" / "clock.py").write_text("def now():\n    return 0\n")
    starts(app_dir)  # deployed with the app, the import works
    (app_dir / ".funcignore").write_text("tests\ntools\n")
    complaint = refused(app_dir)
    assert "ModuleNotFoundError: No module named 'tools'" in complaint
    assert "left out of the deployment by .funcignore" in complaint


def test_connections_are_kept_alive_and_answers_carry_no_server_timing(host: Devhost):
    host_name, port = host.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host_name, int(port), timeout=30)
    try:
        for key_id in ("first", "second"):  # the second on the first's connection
            connection.request("GET", f"/api/keys/{key_id}")
            response = connection.getresponse()
            assert json.loads(response.read())["key_id"] == key_id
            assert response.version == 11 and not response.will_close
            assert "Server-Timing" not in response.headers  # the Functions host sends none
    finally:
        connection.close()
    assert wait_for(lambda: host.stderr().count("get_key GET /api/keys/") >= 2)


def test_answers_carry_the_functions_time_when_asked(app_dir: Path):
    devhost = Devhost(app_dir, "--no-timers", env={"DEVHOST_SERVER_TIMING": "1"})
    try:
        response = requests.get(f"{devhost.wait_ready()}/api/keys/timed", timeout=30)
        name, _, duration = response.headers["Server-Timing"].partition(";dur=")
        assert name == "function" and float(duration) >= 0
    finally:
        assert devhost.stop() == 0
