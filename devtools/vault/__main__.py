"""Command line: ``python -m devtools.vault [--host H] [--port P] [--token-port T] [--cert-dir D] [--challenge-resource R]
[--sign-latency-ms S] [--delete-latency-ms D] [--recover-latency-ms R] [--sku premium|standard]
[--throttle | --throttle-scale S] [--no-empty-version-sign]``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from devtools.ports import refuses_taken_port

from .api import DEFAULT_CHALLENGE_RESOURCE
from .certs import ensure_certificates
from .server import LocalVault
from .store import DEFAULT_DELETE_LATENCY, DEFAULT_RECOVER_LATENCY


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.vault",
        description="Local Azure Key Vault (keys API) over HTTPS, with a managed-identity token endpoint over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS vault port, 0 = any free (default: %(default)s)")
    parser.add_argument("--token-port", type=int, default=8080, help="HTTP token port, 0 = any free (default: %(default)s)")
    parser.add_argument(
        "--cert-dir",
        type=Path,
        default=Path(".local/localvault"),
        help="where the CA and server certificate are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--challenge-resource",
        default=DEFAULT_CHALLENGE_RESOURCE,
        help="the resource the vault's authentication challenge names; {port} stands for the vault's "
        "port. The Go SDK needs one whose host is a parent domain of the vault's, port included: "
        "https://0.0.1:{port} for a vault reached at https://127.0.0.1:<port> (default: %(default)s)",
    )
    parser.add_argument(
        "--sign-latency-ms",
        type=_milliseconds,
        default=0.0,
        help="hold each signature back this long, to stand for a remote vault's signing time in a "
        "benchmark; localvault itself signs in well under a millisecond (default: %(default)s)",
    )
    parser.add_argument(
        "--delete-latency-ms",
        type=_milliseconds,
        default=DEFAULT_DELETE_LATENCY * 1000,
        help="how long a deletion takes to take effect: meanwhile the key is under neither /keys nor "
        "/deletedkeys, and a create, recover or purge of its name is a 409 ObjectIsBeingDeleted "
        "(Key Vault takes 1-5 s; default: %(default)s)",
    )
    parser.add_argument(
        "--recover-latency-ms",
        type=_milliseconds,
        default=DEFAULT_RECOVER_LATENCY * 1000,
        help="how long a recovery takes to take effect: meanwhile the key is 404 (Key Vault takes about 1 s; default: %(default)s)",
    )
    parser.add_argument(
        "--sku",
        choices=("premium", "standard"),
        default="premium",
        help="the vault's pricing tier: a standard vault refuses to create HSM-protected keys "
        "(RSA-HSM, EC-HSM) as Key Vault does (default: %(default)s)",
    )
    parser.add_argument(
        "--no-empty-version-sign",
        action="store_false",
        dest="empty_version_sign",
        help="answer a sign by the empty version (POST /keys/{name}//sign) with 404 as Lowkey Vault does, "
        "where Key Vault signs with the current version; to test the app as it runs against Lowkey Vault",
    )
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--throttle",
        action="store_const",
        const=1.0,
        dest="throttle_scale",
        help="hold the vault to Key Vault's documented service limits per 10 s (429 with Retry-After beyond them); off unless given",
    )
    limits.add_argument(
        "--throttle-scale",
        type=_scale,
        dest="throttle_scale",
        metavar="S",
        help="as --throttle, with every limit multiplied by this (e.g. 0.05, so that a small machine reaches them)",
    )
    return parser.parse_args(argv)


def _milliseconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 60_000:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"not a number of milliseconds from 0 to 60000: {text!r}")
    return value


def _scale(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"not a scale above 0 and at most 100: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if refuses_taken_port("localvault", args.host, {"--port": args.port, "--token-port": args.token_port}):
        return 1
    try:
        vault = LocalVault(
            args.host,
            args.port,
            args.token_port,
            ensure_certificates(args.cert_dir),
            args.challenge_resource,
            args.sign_latency_ms,
            args.delete_latency_ms,
            args.recover_latency_ms,
            args.sku,
            args.throttle_scale,
            args.empty_version_sign,
        )
    except OSError as error:  # port taken, address not local, cert dir not writable
        print(f"localvault: cannot start: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    vault.start()
    print(f"localvault ready vault={vault.vault_url} token={vault.token_url}", flush=True)
    while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
        pass
    vault.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
