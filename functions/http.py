"""HTTP plumbing shared by the blueprints: JSON in and out, and the one error-to-status table."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import math
from collections.abc import Callable, Collection, Sequence
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import azure.functions as func

from functions import telemetry
from shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    KeyManagerError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    quoted,
)

log = logging.getLogger(__name__)
# Who did what with which key version: Key Vault's own audit log sees only the app's identity.
audit = logging.getLogger("azure_kv_keymanager.audit")

MAX_BODY_BYTES = 64 * 1024
# An error names this many unknown members of a body at most: a body may hold thousands.
MAX_NAMED_MEMBERS = 3
# Key and maintenance calls carry an Entra ID access token here, as "Bearer <token>".
AUTHORIZATION_HEADER = "Authorization"
# A 429 that reserved the caller a turn gives its ticket here, and the wait to the millisecond (the
# Azure services' header): the caller sends the ticket back with its next attempt, after the wait.
TURN_HEADER = "X-Retry-Turn"
RETRY_AFTER_MS_HEADER = "retry-after-ms"
# The one place that maps key manager errors to HTTP statuses; the most specific class wins.
STATUS_BY_ERROR: dict[type[KeyManagerError], int] = {
    PayloadTooLarge: 413,
    InvalidArgument: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    FailedPrecondition: 409,
    ResourceExhausted: 429,
    Unavailable: 503,
    KeyManagerError: 500,
}

Handler = Callable[[func.HttpRequest], func.HttpResponse]


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, headers=headers, mimetype="application/json", charset="utf-8")


def error_response(error: KeyManagerError) -> func.HttpResponse:
    status = next(STATUS_BY_ERROR[cls] for cls in type(error).__mro__ if cls in STATUS_BY_ERROR)
    return json_response({"error": {"code": error.code, "message": error.message}}, status, _error_headers(error))


def _error_headers(error: KeyManagerError) -> dict[str, str] | None:
    if isinstance(error, ResourceExhausted):
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
        if error.turn is not None:
            # A turn begins at a moment, not on a whole second: rounded up, every holder would come late.
            headers |= {RETRY_AFTER_MS_HEADER: str(math.ceil(error.retry_after * 1000)), TURN_HEADER: error.turn}
        return headers
    # RFC 6750, 3: a bearer challenge; a request without any token gets one without an error code.
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": 'Bearer error="invalid_token"' if error.has_token else "Bearer"}
    if isinstance(error, PermissionDenied):
        return {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
    return None


def handles_errors(handler: Handler) -> Handler:
    """Render key manager errors as JSON errors; anything else is a bug: a 500 that reveals nothing.

    Either way the error's code is the outcome of the invocation's span and metrics (``telemetry.traced``).
    """

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except KeyManagerError as error:
            telemetry.note_outcome(error)
            if isinstance(error, Unavailable):
                log.warning("%s failed: %s", handler.__name__, error.message)
            return error_response(error)
        except Exception as error:
            telemetry.note_outcome(error)
            log.exception("%s failed unexpectedly", handler.__name__)
            return error_response(KeyManagerError("internal error"))

    return wrapper


def json_body(req: func.HttpRequest) -> dict[str, Any]:
    """The request's JSON object; malformed, non-UTF-8 or oversized bodies are InvalidArgument."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = _BODY_DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument("request body is not UTF-8") from None
    except ValueError:
        raise InvalidArgument("request body is not valid JSON") from None
    except RecursionError:  # json's parser recurses per nesting level; 64 KiB of "[" is far too deep
        raise InvalidArgument("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def _refuse_constant(name: str) -> Any:
    raise InvalidArgument(f"request body holds {name}, which is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidArgument("request body holds a number too large for a float")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two members of one name would let two readers of the body act on different values.
    body = dict(pairs)
    if len(body) != len(pairs):
        raise InvalidArgument("request body names a member more than once in one object")
    return body


# Built once: json.loads with these hooks would build a decoder and its scanner on every call.
_BODY_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_unique_members)


def refuse_unknown_members(body: dict[str, Any], takes: Sequence[str], what: str) -> None:
    """InvalidArgument naming the members of ``body`` not in ``takes`` (a misspelt field would be ignored)."""
    unknown = [name for name in body if name not in takes]
    if unknown:
        named = ", ".join(quoted(name) for name in unknown[:MAX_NAMED_MEMBERS]) + (", ..." if len(unknown) > MAX_NAMED_MEMBERS else "")
        fields = takes[0] if len(takes) == 1 else f"{', '.join(takes[:-1])} and {takes[-1]}"
        raise InvalidArgument(f"unknown field{'s' if len(unknown) > 1 else ''} {named}: {what} takes {fields}")


def query_parameters(req: func.HttpRequest, accepted: Collection[str]) -> dict[str, str]:
    """The query parameters as the caller sent them, each named in ``accepted``, once, with a value.

    Read from the URL itself: the Functions host drops empty values from ``req.params`` and joins
    repeated ones, so ``?dry_run=`` would reach the function as no dry_run at all.
    Anything unknown, repeated, empty or without "=" is InvalidArgument, before anything runs.
    """
    found: dict[str, str] = {}
    query = urlsplit(req.url).query
    for field in query.split("&") if query else ():
        raw_name, has_value, raw_value = field.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if name not in accepted:  # its name only: the value may be anything, a secret included
            accepts = f"only {', '.join(accepted)}" if accepted else "no query parameters"
            raise InvalidArgument(f"unknown query parameter {quoted(name)}: this endpoint accepts {accepts}")
        if name in found:
            raise InvalidArgument(f"query parameter {name} is given more than once")
        if not has_value or not value:
            raise InvalidArgument(f"query parameter {name} has no value")
        found[name] = value
    return found


def optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def required_string(body: dict[str, Any], name: str, missing_message: str) -> str:
    value = optional_string(body, name)
    if not value:
        raise InvalidArgument(missing_message)
    return value


def optional_object(body: dict[str, Any], name: str, takes: Sequence[str]) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a JSON object")
    refuse_unknown_members(value, takes, name)
    return value


def base64_field(body: dict[str, Any], name: str) -> bytes:
    text = required_string(body, name, f"{name} is required")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{name} must be standard base64 (RFC 4648, with padding)") from None


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
