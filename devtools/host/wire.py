"""What the Functions host does between the socket and the worker: request bodies and query strings."""

from __future__ import annotations

import io
import re
import socket
import time
from email.message import Message
from typing import BinaryIO
from urllib.parse import parse_qsl

# The host's default request body limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT); larger bodies are a 413.
MAX_BODY_BYTES = 100 * 1024 * 1024
_INT64_MAX = 2**63 - 1
_MAX_TRAILER_LINES = 100
_MAX_LINE_BYTES = 8192


class BadRequestBody(Exception):
    """The request's framing is unusable: answer ``status`` at once, run nothing."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ClientLeft(Exception):
    """The client closed the connection before sending the whole body."""


class HeadersTimeout(Exception):
    """The request line and headers did not all arrive by their deadline (not a TimeoutError, which
    http.server takes for a silent hang-up: the host answers 408)."""


class ConnectionReader:
    """A connection's reader. While ``deadline`` (a time.monotonic() value) is set, lines must be
    complete by then: one deadline for a request's line and headers together, not a time per read."""

    def __init__(self, buffered: io.BufferedReader, connection: socket.socket) -> None:
        self.buffered = buffered
        self.connection = connection
        self.deadline: float | None = None

    def read(self, size: int = -1) -> bytes:
        return self.buffered.read(size)

    def readline(self, limit: int = -1) -> bytes:
        if self.deadline is None:
            return self.buffered.readline(limit)
        line = bytearray()
        while limit < 0 or len(line) < limit:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise HeadersTimeout()
            self.connection.settimeout(remaining)
            try:
                available = self.buffered.peek(1)  # what is buffered, or at most one read from the socket
            except TimeoutError:
                raise HeadersTimeout() from None
            if not available:
                break
            available = available[: limit - len(line)] if limit >= 0 else available
            end = available.find(b"\n")
            line += self.buffered.read(end + 1 if end >= 0 else len(available))
            if end >= 0:
                break
        return bytes(line)

    def close(self) -> None:
        self.buffered.close()


def read_body(headers: Message, rfile: BinaryIO) -> bytes:
    """The request body, framed by ``Transfer-Encoding: chunked`` or ``Content-Length`` as Kestrel does."""
    codings = [c.strip().lower() for c in ",".join(headers.get_all("Transfer-Encoding") or []).split(",") if c.strip()]
    if codings:  # Transfer-Encoding wins over Content-Length (RFC 9112, 6.3)
        if codings[-1] != "chunked":
            raise BadRequestBody(400, f"final transfer coding is {codings[-1]!r}, not 'chunked'")
        return _read_chunked(rfile)
    lengths = {value.strip() for value in headers.get_all("Content-Length") or []}
    if not lengths:
        return b""
    length_text = lengths.pop()
    if lengths or not re.fullmatch(r"[0-9]+", length_text) or int(length_text) > _INT64_MAX:
        raise BadRequestBody(400, "invalid Content-Length")
    if int(length_text) > MAX_BODY_BYTES:
        raise BadRequestBody(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return _read_exactly(rfile, int(length_text))


def _read_exactly(rfile: BinaryIO, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise ClientLeft()
    return data


def _read_line(rfile: BinaryIO) -> bytes:
    line = rfile.readline(_MAX_LINE_BYTES + 1)
    if not line:
        raise ClientLeft()
    if not line.endswith(b"\n"):
        raise BadRequestBody(400, "chunk framing line too long")
    return line


def _read_chunked(rfile: BinaryIO) -> bytes:
    body = bytearray()
    while True:
        size_text = _read_line(rfile).split(b";", 1)[0].strip()  # chunk extensions are ignored
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
            raise BadRequestBody(400, "invalid chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > MAX_BODY_BYTES:
            raise BadRequestBody(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body += _read_exactly(rfile, size)
        if _read_exactly(rfile, 2) != b"\r\n":
            raise BadRequestBody(400, "chunk data not followed by CRLF")
    for _ in range(_MAX_TRAILER_LINES):  # trailer fields, up to the empty line; the host ignores them
        if _read_line(rfile).strip() == b"":
            return bytes(body)
    raise BadRequestBody(400, "too many trailer fields")


def host_query_params(query: str) -> dict[str, str]:
    """Query parameters as the host hands them to the worker (``HttpRequest.params``).

    ASP.NET Core collects values per name, ignoring the name's case (the first spelling stays);
    the host then joins each name's values with "," and leaves out names whose joined value is
    empty: ``?a=`` gives no ``a`` at all, ``?a=1&a=2`` gives ``a=1,2``.
    """
    values: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(spelling.setdefault(name.casefold(), name), []).append(value)
    joined = {name: ",".join(parts) for name, parts in values.items()}
    return {name: value for name, value in joined.items() if value}
