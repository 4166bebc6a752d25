"""Ports the local tools listen on: say which one is taken, and with which flag to choose another."""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping


def taken_port(host: str, ports_by_flag: Mapping[str, int]) -> str | None:
    """Why the first of ``ports_by_flag`` (0: any free port) cannot be listened on at ``host``, naming its flag; None when all can."""
    for flag, port in ports_by_flag.items():
        if port == 0:
            continue
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as error:
            return f"port {port} ({flag}) cannot be listened on: {error.strerror}; choose another with {flag} <port>, or stop what uses it"
    return None


def refuses_taken_port(program: str, host: str, ports_by_flag: Mapping[str, int]) -> bool:
    """Say on stderr, as ``program``, which of ``ports_by_flag`` is taken and how to choose another; True when one is."""
    taken = taken_port(host, ports_by_flag)
    if taken:
        print(f"{program}: {taken}", file=sys.stderr)
    return taken is not None
