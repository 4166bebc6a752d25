"""Key operations over HTTP: SPIRE's KeyManager calls, one function each."""

from __future__ import annotations

import logging
import re
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from functions import telemetry
from functions.http import (
    AUTHORIZATION_HEADER,
    TURN_HEADER,
    audit,
    base64_field,
    error_response,
    handles_errors,
    json_body,
    json_response,
    optional_object,
    optional_string,
    query_parameters,
    refuse_unknown_members,
    required_string,
    to_base64,
)
from functions.telemetry import traced
from shared import app_context
from shared.algorithms import HashAlgorithm, KeyType, SignerOptions
from shared.callers import Caller
from shared.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable, shortened
from shared.instances import parse_instance_id, shared_name_message
from shared.key_manager import KeyManager, SignRequest
from shared.key_vault_pipeline import KeyVaultCalls, key_vault_calls
from shared.naming import server_label
from shared.public_keys import PublicKey

bp = func.Blueprint()
log = logging.getLogger(__name__)

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
# Key Vault's PSS salt is as long as the digest, which both of Go's special salt lengths accept.
SALT_LENGTH_EQUALS_HASH = -1  # Go's rsa.PSSSaltLengthEqualsHash
SALT_LENGTH_AUTO = 0  # Go's rsa.PSSSaltLengthAuto, also proto3's default when SPIRE sets none
# Every key call carries an Entra ID access token. Optional: which SPIRE server the caller acts as
# (one of the names it holds; a caller holding one name may leave it out), and the trust domain it
# belongs to (refused unless it is the app's).
SERVER_NAME_HEADER = "X-SPIRE-Server-Name"
TRUST_DOMAIN_HEADER = "X-SPIRE-Trust-Domain"
# Optional: the calling plugin process's random id, the same on all its calls, so that two live
# processes under one server name are told from a restart (shared/instances.py).
PLUGIN_INSTANCE_HEADER = "X-SPIRE-Plugin-Instance"
# Optional: when the caller stops waiting for this attempt (RFC 3339). No Key Vault request is
# sent later than DEADLINE_MARGIN_SECONDS before it, to allow for clock skew.
DEADLINE_HEADER = "X-Request-Deadline"
# What shared/key_vault_hold_off.py's tickets look like (secrets.token_urlsafe(12)).
_TURN_TICKET = re.compile(r"[A-Za-z0-9_-]{16}")
DEADLINE_MARGIN_SECONDS = 1.0
# On a 429 or 503 from POST /api/keys, "false" when no key version was made nor can be made later
# (no create was sent, or Key Vault refused each one): sending the request again is safe.
KEY_CREATED_HEADER = "X-Key-Created"
# The members each request body takes; any other is refused, so that a misspelt one is not ignored.
GENERATE_KEY_FIELDS = ("key_id", "key_type")
SIGN_FIELDS = ("data", "hash_algorithm", "pss_options", "key_fingerprint")
PSS_OPTIONS_FIELDS = ("hash_algorithm", "salt_length")


@bp.function_name("generate_key")
@bp.route(route="keys", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@traced("generate_key")
@handles_errors
def generate_key(req: func.HttpRequest) -> func.HttpResponse:
    call = server_call(req)
    if app_context.instances().overlaps_on_any_instance(call.server_name):
        # Each process would rotate the other's keys; reads and signs go on, so both keep serving.
        telemetry.note_stopped(telemetry.OVERLAPPING_INSTANCES)
        raise FailedPrecondition(shared_name_message(call.server_name))
    body = json_body(req)
    refuse_unknown_members(body, GENERATE_KEY_FIELDS, "POST /api/keys")
    key_id = required_string(body, "key_id", "key id is required")
    key_type = KeyType.parse(required_string(body, "key_type", "key type is required"))
    telemetry.note(key_id=key_id, key_type=key_type.value)
    with invocation_calls(req) as calls:
        try:
            public_key = call.manager.generate_key(key_id, key_type)
        except (ResourceExhausted, Unavailable) as error:
            if calls.create_may_have_landed:
                raise
            log.warning("generate_key failed before any key was made: %s", error.message)
            response = error_response(error)
            response.headers[KEY_CREATED_HEADER] = "false"
            return response
    call.audit("generate_key", key_id, public_key.version)
    return json_response({"public_key": _render(public_key)})


@bp.function_name("get_public_key")
@bp.route(route="keys/{key_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@traced("get_public_key")
@handles_errors
def get_public_key(req: func.HttpRequest) -> func.HttpResponse:
    manager = server_call(req).manager
    key_id = req.route_params.get("key_id", "")
    telemetry.note(key_id=key_id)
    with invocation_calls(req):
        return json_response({"public_key": _render(manager.get_public_key(key_id))})


@bp.function_name("get_public_keys")
@bp.route(route="keys", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@traced("get_public_keys")
@handles_errors
def get_public_keys(req: func.HttpRequest) -> func.HttpResponse:
    manager = server_call(req).manager
    with invocation_calls(req):
        return json_response({"public_keys": [_render(key) for key in manager.get_public_keys()]})


@bp.function_name("sign_data")
@bp.route(route="keys/{key_id}/sign", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@traced("sign_data")
@handles_errors
def sign_data(req: func.HttpRequest) -> func.HttpResponse:
    call = server_call(req)
    request = parse_sign_request(req.route_params.get("key_id", ""), json_body(req))
    telemetry.note(key_id=request.key_id, hash_algorithm=request.options.hash_algorithm.value, pss=request.options.pss)
    with invocation_calls(req):
        signature = call.manager.sign_data(request)
    call.audit("sign_data", request.key_id, signature.version)
    return json_response({"signature": to_base64(signature.signature), "key_fingerprint": signature.key_fingerprint})


@dataclass(frozen=True)
class ServerCall:
    """A key call whose caller is proven and may act as ``server_name`` (None: the default server)."""

    caller: Caller
    server_name: str | None
    manager: KeyManager

    def audit(self, operation: str, key_id: str, version: str) -> None:
        audit.info(
            "%s by caller %s as server %s: key %s version %s",
            operation,
            self.caller.object_id,
            server_label(self.server_name),
            key_id,
            version,
        )


def server_call(req: func.HttpRequest) -> ServerCall:
    """The caller proven by its token and authorized as a server, before anything else is read or done."""
    caller, server_name = app_context.callers().server_caller(req.headers.get(AUTHORIZATION_HEADER), req.headers.get(SERVER_NAME_HEADER))
    query_parameters(req, accepted=())  # the key routes read none: one sent is a mistake to report
    telemetry.note_server(server_name)
    instance_id = parse_instance_id(req.headers.get(PLUGIN_INSTANCE_HEADER))
    call = ServerCall(caller, server_name, app_context.key_manager(server_name, req.headers.get(TRUST_DOMAIN_HEADER)))
    instances = app_context.instances()
    if instance_id is not None and instances.note(server_name, instance_id) and instances.overlaps(server_name):
        telemetry.note_stopped(telemetry.OVERLAPPING_INSTANCES)
        log.error("%s", shared_name_message(server_name))
    return call


def invocation_calls(req: func.HttpRequest) -> AbstractContextManager[KeyVaultCalls]:
    """The invocation's Key Vault requests, under the caller's deadline and in the turn it holds."""
    return key_vault_calls(_send_by(req.headers.get(DEADLINE_HEADER)), _turn(req.headers.get(TURN_HEADER)))


def _turn(ticket: str | None) -> str | None:
    if ticket is not None and not _TURN_TICKET.fullmatch(ticket):
        raise InvalidArgument(f"{TURN_HEADER} must be the ticket of a 429 that reserved a turn, sent back as it came")
    return ticket


def _send_by(deadline: str | None) -> float | None:
    """The ``time.monotonic()`` after which no Key Vault request goes out for the caller's deadline."""
    if deadline is None:
        return None
    try:
        when = datetime.fromisoformat(deadline)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidArgument(f"{DEADLINE_HEADER} must be an RFC 3339 time with its offset, such as 2030-01-02T03:04:05.678Z")
    return time.monotonic() + (when - datetime.now(UTC)).total_seconds() - DEADLINE_MARGIN_SECONDS


def parse_sign_request(key_id: str, body: dict[str, Any]) -> SignRequest:
    if not key_id:
        raise InvalidArgument("key id is required")
    refuse_unknown_members(body, SIGN_FIELDS, "POST /api/keys/{key_id}/sign")
    data = base64_field(body, "data")
    key_fingerprint = optional_string(body, "key_fingerprint")
    if key_fingerprint is not None:
        key_fingerprint = key_fingerprint.lower()
        if not _FINGERPRINT.fullmatch(key_fingerprint):
            raise InvalidArgument("key_fingerprint must be the 64 hex digits of a SHA-256 fingerprint")
    return SignRequest(key_id, data, _signer_options(body), key_fingerprint)


def _signer_options(body: dict[str, Any]) -> SignerOptions:
    pss = optional_object(body, "pss_options", PSS_OPTIONS_FIELDS)
    hash_name = optional_string(body, "hash_algorithm")
    if pss is not None and hash_name is not None:
        raise InvalidArgument("give either hash_algorithm or pss_options, not both")
    if pss is None:
        if hash_name is None:
            raise InvalidArgument("signer opts is required: give hash_algorithm or pss_options")
        return SignerOptions(HashAlgorithm.parse(hash_name))
    hash_algorithm = HashAlgorithm.parse(required_string(pss, "hash_algorithm", "pss_options.hash_algorithm is required"))
    salt_length = pss.get("salt_length")
    if salt_length is not None:
        if isinstance(salt_length, bool) or not isinstance(salt_length, int):
            raise InvalidArgument("pss_options.salt_length must be an integer")
        if salt_length not in (SALT_LENGTH_AUTO, SALT_LENGTH_EQUALS_HASH, hash_algorithm.digest_size):
            raise InvalidArgument(
                f"pss_options.salt_length {shortened(str(salt_length))} is not supported: Key Vault signs with a salt "
                f"as long as the digest ({hash_algorithm.digest_size} bytes for {hash_algorithm.value}); give 0, -1 "
                f"or {hash_algorithm.digest_size}, or leave it out"
            )
    return SignerOptions(hash_algorithm, pss=True)


def _render(key: PublicKey) -> dict[str, str]:
    return {"id": key.id, "type": key.type.value, "pkix_data": to_base64(key.pkix_data), "fingerprint": key.fingerprint}
