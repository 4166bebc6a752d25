"""`python -m devtools.stack`: Azurite (blob 10000), the local Key Vault (8443, token 8080), the local
Entra ID (8444, managed identity 8081) and devhost (7071).

Stops everything on Ctrl-C or SIGTERM. The app reaches the stand-ins this started, on whatever ports
were chosen: their addresses are passed to devhost as environment, which wins over
local.settings.json (as with `func start`); the other settings come from local.settings.json, made
from local.settings.sample.json when there is none yet. "Stack ready" comes once the app's health
answers 200; a port already taken, or an app that is not healthy, stops the stack with the reason.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import requests

from devtools.entra.client import LocalEntra
from devtools.ports import refuses_taken_port
from devtools.stack.callers import local_callers, token_command
from devtools.stack.services import (
    LOCAL_SETTINGS,
    ROOT,
    SAMPLE_SETTINGS,
    StackError,
    app_settings,
    ensure_local_settings,
    start_azurite,
    start_devhost,
    start_entra,
    start_localvault,
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument("--blob-port", type=int, default=10000)
    parser.add_argument("--vault-port", type=int, default=8443)
    parser.add_argument("--token-port", type=int, default=8080)
    parser.add_argument("--entra-port", type=int, default=8444, help="the local Entra ID's port (HTTPS)")
    parser.add_argument("--msi-port", type=int, default=8081, help="its managed-identity endpoint's port")
    parser.add_argument("--port", type=int, default=7071, help="devhost's port")
    parser.add_argument(
        "--settings",
        default=str(LOCAL_SETTINGS.relative_to(ROOT)),
        help="the app's settings file, relative to the repository (made from the sample when it is the default and missing)",
    )
    args = parser.parse_args()
    ports = {
        "--blob-port": args.blob_port,
        "--vault-port": args.vault_port,
        "--token-port": args.token_port,
        "--entra-port": args.entra_port,
        "--msi-port": args.msi_port,
        "--port": args.port,
    }
    if refuses_taken_port("devstack", "127.0.0.1", ports):
        return 1
    if args.settings == str(LOCAL_SETTINGS.relative_to(ROOT)) and ensure_local_settings(LOCAL_SETTINGS):
        print(f"devstack: made {LOCAL_SETTINGS.name} from {SAMPLE_SETTINGS.name}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    services = []
    try:
        azurite = start_azurite(args.blob_port, ROOT / ".local" / "azurite")
        services.append(azurite)
        vault = start_localvault(args.vault_port, args.token_port, ROOT / ".local" / "localvault")
        services.append(vault)
        entra_service = start_entra(args.entra_port, args.msi_port, ROOT / ".local" / "localentra")
        services.append(entra_service)
        entra = LocalEntra(entra_service)
        callers = local_callers(entra, ROOT / ".local" / "localentra")
        devhost = start_devhost(
            args.port, {**os.environ, **app_settings(azurite, vault), **callers.settings(entra)}, local_settings=args.settings
        )
        services.append(devhost)
        wait_until_healthy(f"{devhost.url}/api/health")
        print(f"Stack ready: the API is at {devhost.url}/api (Ctrl-C stops everything)", flush=True)
        print(
            f"Callers: the API application's client id is {callers.api.client_id}. The local SPIRE server's identity "
            f"(object id {callers.spire_server.object_id}, client id {callers.spire_server.client_id}) may act as the "
            f"default server and as spire-server-0 and spire-server-1; the maintainer's is {callers.maintainer.object_id}.\n"
            f"A token as the local SPIRE server:  TOKEN=$({token_command(entra_service, callers.api, callers.spire_server)})\n"
            f"A token as the maintainer:          TOKEN=$({token_command(entra_service, callers.api, callers.maintainer)})\n"
            'Then: curl -H "Authorization: Bearer $TOKEN" ' + f"{devhost.url}/api/keys",
            flush=True,
        )
        while not stop.is_set() and all(s.process.poll() is None for s in services):
            stop.wait(0.5)
        return 0 if stop.is_set() else 1
    except StackError as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(services):
            service.stop()


def wait_until_healthy(health_url: str, timeout_seconds: float = 60) -> None:
    """Return once the app's health answers 200; raise StackError with its reason when it answers 503 for
    anything but its first dependency check, or when it never answers in time."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            response = requests.get(health_url, timeout=10)
        except requests.RequestException as error:
            reason = f"the app did not answer its health check: {type(error).__name__}"
        else:
            if response.status_code == 200:
                return
            body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
            message = body.get("error", {}).get("message", response.text)
            reason = f"the app is not healthy ({body.get('dependency', response.status_code)}): {message}"
            if body.get("dependency") not in (None, "not_checked_yet"):
                raise StackError(reason)
        if time.monotonic() > deadline:
            raise StackError(reason)
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
