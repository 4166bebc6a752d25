"""Concurrency: 16 sign_data requests at once through devhost, Key Vault answering after 50 ms.

``python -m benchmarks.concurrency`` is the server: devhost's own server code serving the
app, whose key manager is wired (build_servers) on a fake transport that sleeps 50 ms a request.
sign_data is a sync function, so it runs on the worker's thread pool: 16 calls take at best as many
50 ms rounds as that pool needs for them, and the budget allows devhost 1.5 x on top of that.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from azure_functions_runtime.utils.threadpool import _get_max_workers

from benchmarks import fakes
from benchmarks.common import ROOT, Figure

VAULT_DELAY = 0.05
CONCURRENT = 16
ROUNDS = 7
ALLOWANCE = 1.5


def serve() -> None:
    from devtools.host.functions import load_app
    from devtools.host.server import DevHost, DevHostServer
    from devtools.host.settings import read_route_prefix

    fakes.install_fake_servers(fakes.FakeKeyVaultTransport(delay=VAULT_DELAY))
    authorization = fakes.install_caller_gate()["Authorization"]
    server = DevHostServer(("127.0.0.1", 0), DevHost(load_app(ROOT), read_route_prefix(ROOT)))
    # The caller's token is the bench tenant's, made in this process: the client reads it from here.
    print(f"bench devhost ready http://127.0.0.1:{server.server_address[1]} {authorization}", flush=True)
    server.serve_forever()


def _connect(address: str) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection(address, timeout=30)
    connection.connect()
    return connection


def _call(connection: http.client.HTTPConnection, method: str, path: str, authorization: str, body: dict | None = None) -> dict:
    """One request, then the connection is closed: every call is on a connection of its own."""
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers={"Authorization": authorization})
    response = connection.getresponse()
    payload = json.loads(response.read() or b"{}")
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {payload}")
    return payload


def _signs_at_once(address: str, authorization: str, body: dict, count: int) -> float:
    """Seconds from a common start until ``count`` sign requests, each on its own connection, have ended."""
    start = threading.Barrier(count + 1)
    ended: list[float] = []
    failed: list[BaseException] = []

    def sign() -> None:
        start.wait()
        try:
            _call(_connect(address), "POST", f"/api/keys/{fakes.KEY_ID}/sign", authorization, body)
        except (OSError, RuntimeError) as error:
            failed.append(error)
        ended.append(time.perf_counter())

    threads = [threading.Thread(target=sign) for _ in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} sign requests failed: {failed[0]!r}")
    return max(ended) - started


def _pool_threads() -> int:
    """The worker's pool size in the bench server, which inherits this environment: PYTHON_THREADPOOL_THREAD_COUNT,
    or ThreadPoolExecutor's default, min(32, CPUs + 4), as the app sets none."""
    return _get_max_workers() or min(32, (os.process_cpu_count() or 1) + 4)


def _median_ms(values) -> float:
    return round(statistics.median(values) * 1000, 1)


def run() -> list[Figure]:
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.concurrency"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "ready" not in line:
            raise RuntimeError(f"the bench devhost did not start: {line!r}")
        url, authorization = line.split()[-3], " ".join(line.split()[-2:])
        address = urlsplit(url).netloc
        key = _call(_connect(address), "GET", f"/api/keys/{fakes.KEY_ID}", authorization)
        body = fakes.sign_body(key["public_key"]["fingerprint"])
        _signs_at_once(address, authorization, body, 1), _signs_at_once(address, authorization, body, CONCURRENT)  # warm both paths
        rounds = [(_signs_at_once(address, authorization, body, CONCURRENT), _signs_at_once(address, authorization, body, 1))
                  for _ in range(ROUNDS)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    ratio = statistics.median(many / one for many, one in rounds)
    threads = _pool_threads()
    floor = math.ceil(CONCURRENT / threads)  # the worker itself can do no better
    return [
        Figure(f"concurrency: {CONCURRENT} signs at once / 1 sign", round(ratio, 2), "x", floor + ALLOWANCE,
               f"devhost, Key Vault answering after {VAULT_DELAY * 1000:.0f} ms; median of {ROUNDS} rounds; "
               f"a pool of {threads} threads: {floor} x at best"),
        Figure("concurrency: 1 sign", _median_ms(one for _, one in rounds), "ms"),
        Figure(f"concurrency: {CONCURRENT} signs at once", _median_ms(many for many, _ in rounds), "ms",
               notes="each on a connection of its own, opened at the start"),
    ]


if __name__ == "__main__":
    serve()
