"""Command line: ``python -m devtools.entra [--port P] [--msi-port Q] [--state-dir DIR]``.

Prints one line when ready::

    localentra ready authority=https://127.0.0.1:P tenant=<tenant id> msi=http://127.0.0.1:Q/msi/token

then one line per request, and stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from devtools.ports import refuses_taken_port
from devtools.vault.certs import ensure_certificates

from .server import LocalEntra

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.entra",
        description="Local Microsoft Entra ID (discovery, keys, client credentials tokens) over HTTPS on 127.0.0.1, "
        "with an App Service managed-identity endpoint over HTTP.",
    )
    parser.add_argument("--port", type=int, default=8444, help="HTTPS port, 0 = any free (default: %(default)s)")
    parser.add_argument("--msi-port", type=int, default=8081, help="managed-identity HTTP port, 0 = any free (default: %(default)s)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".local/localentra"),
        help="where the CA (ca.pem), the tenant, its keys and its registry are kept (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if refuses_taken_port("localentra", "127.0.0.1", {"--port": args.port, "--msi-port": args.msi_port}):
        return 1
    try:
        entra = LocalEntra(args.port, args.msi_port, args.state_dir, ensure_certificates(args.state_dir))
    except (OSError, ValueError, KeyError) as error:  # port taken, state directory not writable, state file damaged
        print(f"localentra: cannot start: {error}", file=sys.stderr)
        return 1
    # Blocked before the server threads exist, so they inherit the mask and only sigwait receives the signals.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    entra.start()
    print(f"localentra ready authority={entra.authority} tenant={entra.directory.tenant_id} msi={entra.msi_endpoint}", flush=True)
    signal.sigwait(STOP_SIGNALS)
    entra.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
