"""``python -m devtools.host``: serve the app in --app-dir the way ``func start`` would."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from devtools.ports import refuses_taken_port

from .functions import AppError, load_app
from .server import HEADERS_TIMEOUT_SECONDS, KEEP_ALIVE_TIMEOUT_SECONDS, DevHost, DevHostServer
from .settings import SettingsError, load_local_settings, read_route_prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.host", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071, help="0 picks a free port")
    parser.add_argument("--app-dir", default=".", help="folder holding function_app.py and host.json")
    parser.add_argument("--settings", default="local.settings.json", help="relative to --app-dir")
    parser.add_argument("--no-timers", action="store_true", help="do not run timers on schedule")
    parser.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=KEEP_ALIVE_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="close a connection that waits this long for a request",
    )
    parser.add_argument(
        "--headers-timeout",
        type=float,
        default=HEADERS_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="answer 408 when a request's line and headers take longer to arrive",
    )
    args = parser.parse_args(argv)
    # Opt-in, read before the app's settings: the Functions host never sends Server-Timing.
    server_timing = os.environ.get("DEVHOST_SERVER_TIMING") == "1"
    # stderr carries our log lines and whatever the functions log, as func start shows them.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(asctime)s] %(message)s")

    if refuses_taken_port("devhost", args.host, {"--port": args.port}):
        return 1
    app_dir = Path(args.app_dir).resolve()
    try:
        # Settings first: function_app.py may read them at import time.
        applied = load_local_settings(app_dir / args.settings)  # an absolute --settings wins the join
        logging.getLogger("devhost").info("applied %d setting(s) from %s", len(applied), args.settings)
        devhost = DevHost(load_app(app_dir), read_route_prefix(app_dir), server_timing)
    except (SettingsError, AppError) as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 1

    try:
        server = DevHostServer((args.host, args.port), devhost, args.keep_alive_timeout, args.headers_timeout)
    except OSError as error:  # taken since the check
        print(
            f"devhost: port {args.port} (--port) cannot be listened on: {error.strerror}; choose another with --port <port>",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # serve_forever runs on a thread: shutdown() from the main thread would deadlock otherwise.
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    base_url = f"http://{args.host}:{server.server_address[1]}"
    print(f"devhost ready {base_url}", flush=True)
    print(devhost.describe(base_url), flush=True)
    if args.no_timers:
        print("Timers are disabled (--no-timers); run them with POST /admin/functions/{name}.", flush=True)
    else:
        devhost.start_timers()

    while not stop.wait(0.5):  # short waits keep signal handling prompt
        pass
    devhost.stopping.set()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
