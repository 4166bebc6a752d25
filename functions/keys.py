"""Key operations over HTTP: SPIRE's KeyManager calls, one function each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from functions.http import (
    AUTHORIZATION_HEADER,
    audit,
    base64_field,
    handles_errors,
    json_body,
    json_response,
    optional_object,
    optional_string,
    required_string,
    to_base64,
)
from shared import app_context
from shared.algorithms import HashAlgorithm, KeyType, SignerOptions
from shared.callers import Caller
from shared.errors import InvalidArgument, shortened
from shared.key_manager import KeyManager, SignRequest
from shared.public_keys import PublicKey

bp = func.Blueprint()

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
# Go's rsa.PSSSaltLengthEqualsHash, and rsa.PSSSaltLengthAuto (also proto3's default when SPIRE sets
# none): Key Vault's salt as long as the digest is what the first asks and a valid choice for the second.
SALT_LENGTH_EQUALS_HASH = -1
SALT_LENGTH_AUTO = 0
# Every key call carries an Entra ID access token. Optional: which SPIRE server the caller acts as
# (one of the names it holds; a caller holding one name may leave it out), and the trust domain it
# belongs to (refused unless it is the app's).
SERVER_NAME_HEADER = "X-SPIRE-Server-Name"
TRUST_DOMAIN_HEADER = "X-SPIRE-Trust-Domain"


@bp.function_name("generate_key")
@bp.route(route="keys", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def generate_key(req: func.HttpRequest) -> func.HttpResponse:
    call = server_call(req)
    body = json_body(req)
    key_id = required_string(body, "key_id", "key id is required")
    key_type = KeyType.parse(required_string(body, "key_type", "key type is required"))
    public_key = call.manager.generate_key(key_id, key_type)
    call.audit("generate_key", key_id, public_key.version)
    return json_response({"public_key": _render(public_key)})


@bp.function_name("get_public_key")
@bp.route(route="keys/{key_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def get_public_key(req: func.HttpRequest) -> func.HttpResponse:
    manager = server_call(req).manager
    return json_response({"public_key": _render(manager.get_public_key(req.route_params.get("key_id", "")))})


@bp.function_name("get_public_keys")
@bp.route(route="keys", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def get_public_keys(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"public_keys": [_render(key) for key in server_call(req).manager.get_public_keys()]})


@bp.function_name("sign_data")
@bp.route(route="keys/{key_id}/sign", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def sign_data(req: func.HttpRequest) -> func.HttpResponse:
    call = server_call(req)
    request = parse_sign_request(req.route_params.get("key_id", ""), json_body(req))
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
            operation, self.caller.object_id, self.server_name or "(default)", key_id, version,
        )


def server_call(req: func.HttpRequest) -> ServerCall:
    """The caller proven by its token and authorized as a server, before anything else is read or done."""
    caller, server_name = app_context.callers().server_caller(req.headers.get(AUTHORIZATION_HEADER), req.headers.get(SERVER_NAME_HEADER))
    return ServerCall(caller, server_name, app_context.key_manager(server_name, req.headers.get(TRUST_DOMAIN_HEADER)))


def parse_sign_request(key_id: str, body: dict[str, Any]) -> SignRequest:
    if not key_id:
        raise InvalidArgument("key id is required")
    data = base64_field(body, "data")
    key_fingerprint = optional_string(body, "key_fingerprint")
    if key_fingerprint is not None:
        key_fingerprint = key_fingerprint.lower()
        if not _FINGERPRINT.fullmatch(key_fingerprint):
            raise InvalidArgument("key_fingerprint must be the 64 hex digits of a SHA-256 fingerprint")
    return SignRequest(key_id, data, _signer_options(body), key_fingerprint)


def _signer_options(body: dict[str, Any]) -> SignerOptions:
    pss = optional_object(body, "pss_options")
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
