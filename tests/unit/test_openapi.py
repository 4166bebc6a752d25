"""openapi.json: a valid OpenAPI document that describes exactly the HTTP functions the app declares."""

import base64
import json
import re
from pathlib import Path

import azure.functions as func
import pytest
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec

from functions import openapi as openapi_function
from functions.http import STATUS_BY_ERROR
from functions.keys import parse_sign_request
from shared import errors
from shared.algorithms import HashAlgorithm, KeyType
from shared.errors import InvalidArgument
from shared.instances import Instances, SharedInstances
from shared.maintenance import Failure, LastRefresh, RefreshReport, SweepReport
from shared.naming import MAX_KEY_ID_LENGTH, validate_key_id
from tests.unit.test_function_app import FUNCTIONS  # get_functions() may run once per process

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((ROOT / "functions" / "openapi.json").read_text())
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _http_functions() -> dict[str, dict]:
    return {
        f.get_function_name(): f.get_trigger().get_dict_repr()
        for f in FUNCTIONS
        if f.get_trigger().get_dict_repr()["type"] == "httpTrigger"
    }


HTTP_FUNCTIONS = _http_functions()


def _methods(trigger: dict) -> set[str]:
    return {str(getattr(m, "value", m)).lower() for m in trigger["methods"]}


def _operations() -> dict[tuple[str, str], dict]:
    return {
        (path, method): operation
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def _operation(function_name: str) -> dict:
    (operation,) = [op for op in _operations().values() if op["operationId"] == function_name]
    return operation


def _deref(node: dict) -> dict:
    """Follow local $refs until an object without one."""
    while "$ref" in node:
        target = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _validator(schema_name: str) -> OAS30Validator:
    schema = {"components": DOCUMENT["components"], "$ref": f"#/components/schemas/{schema_name}"}
    return OAS30Validator(schema, format_checker=oas30_format_checker)


def test_the_document_is_a_valid_openapi_3_document():
    validate_spec(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.0.")


def test_the_server_is_the_route_prefix():
    host = json.loads((ROOT / "host.json").read_text())
    assert DOCUMENT["servers"] == [{"url": "/" + host["extensions"]["http"]["routePrefix"]}]


def test_every_http_function_is_an_operation_with_its_name_as_operation_id():
    for name, trigger in HTTP_FUNCTIONS.items():
        path = "/" + trigger["route"].strip("/")
        assert path in DOCUMENT["paths"], f"{name}: {path} is not documented"
        for method in _methods(trigger):
            operation = DOCUMENT["paths"][path].get(method)
            assert operation is not None, f"{name}: {method.upper()} {path} is not documented"
            assert operation["operationId"] == name


def test_the_document_has_no_operation_the_app_does_not_serve():
    served = {("/" + t["route"].strip("/"), m) for t in HTTP_FUNCTIONS.values() for m in _methods(t)}
    assert set(_operations()) == served
    operation_ids = [op["operationId"] for op in _operations().values()]
    assert sorted(operation_ids) == sorted(HTTP_FUNCTIONS)


def test_path_parameters_are_the_routes_parameters():
    for name, trigger in HTTP_FUNCTIONS.items():
        route_params = set(re.findall(r"\{(\w+)\}", trigger["route"]))
        documented = {_deref(p)["name"] for p in _operation(name).get("parameters", []) if _deref(p)["in"] == "path"}
        assert documented == route_params, name


def _scheme(name: str) -> dict:
    return DOCUMENT["components"]["securitySchemes"][name]


GUARDED_FUNCTIONS = {"generate_key", "get_public_key", "get_public_keys", "sign_data", "refresh_keys_now", "sweep_stale_keys_now"}


def test_the_key_and_maintenance_operations_need_an_entra_bearer_token_and_the_others_none():
    for name, trigger in HTTP_FUNCTIONS.items():
        assert trigger["authLevel"].value == "anonymous", name  # the app checks tokens itself, not the host keys
        security = _operation(name)["security"]
        if name not in GUARDED_FUNCTIONS:
            assert security == [], name
            continue
        assert security == [{"entraBearer": []}], name
    assert _scheme("entraBearer") | {"description": ""} == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": ""}
    assert set(DOCUMENT["components"]["securitySchemes"]) == {"entraBearer"}


def test_the_document_offers_no_function_key():
    text = json.dumps(DOCUMENT)
    assert "x-functions-key" not in text and '"code"' not in json.dumps(DOCUMENT["components"]["securitySchemes"])
    assert not any(
        _deref(p)["in"] == "query" and _deref(p)["name"] == "code"
        for operation in _operations().values()
        for p in operation.get("parameters", [])
    )


def test_the_default_security_is_the_bearer_token():
    assert DOCUMENT["security"] == [{"entraBearer": []}]


def test_the_enums_are_the_codes():
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["KeyType"]["enum"] == [t.value for t in KeyType]
    assert schemas["HashAlgorithm"]["enum"] == [h.value for h in HashAlgorithm]
    assert set(schemas["ErrorDetail"]["properties"]["code"]["enum"]) == {cls.code for cls in STATUS_BY_ERROR}


def _error_code(response: dict) -> str:
    schema = response["content"]["application/json"]["schema"]
    assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}
    (code,) = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
    return code


def test_error_responses_are_the_error_schema_with_the_code_of_their_status():
    codes_by_status: dict[int, set[str]] = {}
    for cls, status in STATUS_BY_ERROR.items():
        codes_by_status.setdefault(status, set()).add(cls.code)
    assert codes_by_status[413] == {errors.InvalidArgument.code}  # PayloadTooLarge is an InvalidArgument
    seen = set()
    for (path, method), operation in _operations().items():
        for status, response in operation["responses"].items():
            response = _deref(response)
            if int(status) < 400 or operation["operationId"] == "health":
                continue
            seen.add(int(status))
            assert _error_code(response) in codes_by_status[int(status)], f"{method} {path} {status}"
            if status == "429":
                assert response["headers"]["Retry-After"]["required"] is True
    assert seen == set(STATUS_BY_ERROR.values())


def test_refusals_carry_a_bearer_challenge_and_only_where_tokens_are_needed():
    for name in HTTP_FUNCTIONS:
        operation = _operation(name)
        responses = operation["responses"]
        if operation["security"]:
            for status in ("401", "403"):
                assert _deref(responses[status])["headers"]["WWW-Authenticate"]["required"] is True, (name, status)
        else:
            assert "401" not in responses and "403" not in responses, name


def test_key_ids_are_what_a_key_vault_name_holds():
    key_id = DOCUMENT["components"]["schemas"]["KeyId"]
    assert key_id["maxLength"] == MAX_KEY_ID_LENGTH == 84
    for candidate in ["a", "x509-CA-A", "A" * 84, "A" * 85, "", "a b", "a/b", "a_b", "ключ"]:
        documented = bool(re.search(key_id["pattern"], candidate)) and 1 <= len(candidate) <= key_id["maxLength"]
        try:
            validate_key_id(candidate)
            accepted = True
        except InvalidArgument:
            accepted = False
        assert documented == accepted, candidate


def _b64(size: int) -> str:
    return base64.b64encode(bytes(range(size))).decode()


SIGN_BODIES = [
    {"data": _b64(32), "hash_algorithm": "SHA256"},
    {"data": _b64(48), "hash_algorithm": "SHA384"},
    {"data": _b64(64), "hash_algorithm": "SHA512", "key_fingerprint": "AB" * 32},
    {"data": _b64(32), "pss_options": {"hash_algorithm": "SHA256"}},
    {"data": _b64(48), "pss_options": {"hash_algorithm": "SHA384", "salt_length": -1}},
    {"data": _b64(64), "pss_options": {"hash_algorithm": "SHA512", "salt_length": 64}, "key_fingerprint": "0f" * 32},
    # Rejected:
    {"data": _b64(32), "hash_algorithm": "SHA256", "unknown": "refused"},
    {"data": _b64(32), "pss_options": {"hash_algorithm": "SHA256", "saltLength": 32}},
    {"data": _b64(32)},
    {"hash_algorithm": "SHA256"},
    {"data": _b64(32), "hash_algorithm": "SHA384"},
    {"data": _b64(31), "hash_algorithm": "SHA256"},
    {"data": _b64(32)[:-1], "hash_algorithm": "SHA256"},
    {"data": _b64(32).replace("A", "-"), "hash_algorithm": "SHA256"},
    {"data": _b64(32), "hash_algorithm": "sha256"},
    {"data": _b64(32), "hash_algorithm": "MD5"},
    {"data": _b64(32), "hash_algorithm": "SHA256", "pss_options": {"hash_algorithm": "SHA256"}},
    {"data": _b64(32), "pss_options": {"hash_algorithm": "SHA256", "salt_length": 20}},
    {"data": _b64(32), "pss_options": {"hash_algorithm": "SHA256", "salt_length": 48}},
    {"data": _b64(32), "pss_options": {"hash_algorithm": "SHA256", "salt_length": "32"}},
    {"data": _b64(32), "pss_options": {"hash_algorithm": "SHA256", "salt_length": True}},
    {"data": _b64(32), "pss_options": {}},
    {"data": _b64(32), "pss_options": "SHA256"},
    {"data": _b64(32), "hash_algorithm": "SHA256", "key_fingerprint": "ab" * 31},
    {"data": _b64(32), "hash_algorithm": "SHA256", "key_fingerprint": "zz" * 32},
    {"data": 32, "hash_algorithm": "SHA256"},
]


def _app_accepts_sign_body(body: dict) -> bool:
    """Whether the app gets past validation: parse_sign_request, then the key manager's digest length check."""
    try:
        request = parse_sign_request("x509-CA-A", body)
    except InvalidArgument:
        return False
    return len(request.data) == request.options.hash_algorithm.digest_size


@pytest.mark.parametrize("body", SIGN_BODIES, ids=lambda body: json.dumps(body)[:60])
def test_the_sign_request_schema_accepts_exactly_what_the_app_accepts(body):
    documented = _validator("SignRequest").is_valid(body)
    assert documented == _app_accepts_sign_body(body)


@pytest.mark.parametrize(
    "body, valid",
    [
        ({"key_id": "x509-CA-A", "key_type": "ec-p256"}, True),
        ({"key_id": "a", "key_type": "rsa-4096", "other": 1}, False),
        ({"keyId": "a", "key_type": "rsa-4096"}, False),
        ({"key_id": "a", "key_type": "rsa-3072"}, False),
        ({"key_id": "a"}, False),
        ({"key_type": "ec-p384"}, False),
        ({"key_id": "a b", "key_type": "ec-p384"}, False),
        ({"key_id": 1, "key_type": "ec-p384"}, False),
    ],
)
def test_the_generate_request_schema(body, valid):
    assert _validator("GenerateKeyRequest").is_valid(body) == valid


def test_the_examples_are_valid():
    schemas = DOCUMENT["components"]["schemas"]
    for name in ("GenerateKeyRequest", "SignRequest", "KeyId", "Fingerprint"):
        _validator(name).validate(schemas[name]["example"])
    assert _app_accepts_sign_body(schemas["SignRequest"]["example"])


def test_the_responses_the_code_renders_match_their_schemas():
    from functions.keys import _render
    from shared.public_keys import PublicKey

    key = PublicKey("x509-CA-A", KeyType.EC_P256, b"\x30\x59", "ab" * 32, "0123456789abcdef0123456789abcdef")
    _validator("PublicKeyResponse").validate({"public_key": _render(key)})
    _validator("SignResponse").validate({"signature": _b64(70), "key_fingerprint": "ab" * 32})
    with pytest.raises(ValidationError):
        _validator("PublicKeyResponse").validate({"public_key": {**_render(key), "extra": 1}})
    failure = Failure("spire-key-a-b", "Key Vault did not answer")
    _validator("RefreshReport").validate(RefreshReport(["spire-key-a-b"], [failure], ["spire-a"]).to_dict())
    _validator("SweepReport").validate(SweepReport(True, ["spire-key-c-d"], [], [failure], True, ["spire-key-e-f"]).to_dict())


def test_the_function_serves_the_document_as_json():
    response = openapi_function.openapi(func.HttpRequest("GET", "http://localhost/api/openapi.json", body=b""))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_body()) == DOCUMENT
    assert openapi_function.document() is openapi_function.document()  # read once, then cached


def test_health_answers_match_their_schemas(monkeypatch):
    from functions import health as health_module
    from functions.health import health
    from shared import app_context
    from shared.app_context import SpireServers
    from shared.server_ids import FixedServerDirectory
    from tests.unit.fakes import InMemoryVault

    monkeypatch.delenv("TRUST_DOMAIN", raising=False)
    monkeypatch.setenv("KEY_VAULT_URI", "https://localhost:1")
    response = health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert response.status_code == 503
    _validator("HealthUnavailable").validate(json.loads(response.get_body()))
    _validator("Health").validate({"status": "ok"})
    monkeypatch.setattr(app_context, "_last_refresh", LastRefresh())
    app_context.last_refresh().record(RefreshReport(failed_servers=["spire-a"]))
    now = [0.0]
    instances = SharedInstances(Instances(clock=lambda: now[0]))
    app_context.install_servers(SpireServers("example.org", FixedServerDirectory("app-server"), InMemoryVault(), instances=instances))
    for minute in range(3):  # two processes call as spire-a in three minutes
        now[0] = minute * 60.0
        for instance_id in ("1" * 32, "2" * 32):
            app_context.instances().note("spire-a", instance_id)
    answer = health_module._with_warnings(health_module._Answer(200, {"status": "ok"}))
    assert [warning["code"] for warning in answer.payload["warnings"]] == ["server_name_shared", "refresh_incomplete"]
    _validator("Health").validate(answer.payload)
    _validator("HealthUnavailable").validate(health_module._NOT_CHECKED_YET.payload)  # a cold instance's answer during its first check


def test_a_real_sweep_is_asked_for_in_so_many_words():
    (dry_run,) = [_deref(p) for p in _operation("sweep_stale_keys_now")["parameters"] if _deref(p)["name"] == "dry_run"]
    assert dry_run["in"] == "query" and dry_run["required"] is True
    assert dry_run["schema"] == {"type": "string", "enum": ["true", "false"]}  # no default: none exists


KEY_FUNCTIONS = ("generate_key", "get_public_key", "get_public_keys", "sign_data")


def _header_parameters(function_name: str) -> dict[str, dict]:
    return {p["name"]: p for p in map(_deref, _operation(function_name).get("parameters", [])) if p["in"] == "header"}


def test_the_key_functions_take_the_optional_server_name_trust_domain_plugin_instance_deadline_and_turn_headers():
    from functions.http import TURN_HEADER
    from functions.keys import DEADLINE_HEADER, PLUGIN_INSTANCE_HEADER, SERVER_NAME_HEADER, TRUST_DOMAIN_HEADER

    for name in KEY_FUNCTIONS:
        headers = _header_parameters(name)
        assert set(headers) == {SERVER_NAME_HEADER, TRUST_DOMAIN_HEADER, PLUGIN_INSTANCE_HEADER, DEADLINE_HEADER, TURN_HEADER}, name
        assert not any(header["required"] for header in headers.values()), name
        assert "400" in _operation(name)["responses"], name
    for name in set(HTTP_FUNCTIONS) - set(KEY_FUNCTIONS):
        assert _header_parameters(name) == {}, name


def test_a_429_documents_the_turn_it_may_reserve():
    from functions.http import RETRY_AFTER_MS_HEADER, TURN_HEADER

    headers = _deref(_operation("sign_data")["responses"]["429"])["headers"]
    assert headers["Retry-After"]["required"] is True
    assert headers[RETRY_AFTER_MS_HEADER]["required"] is headers[TURN_HEADER]["required"] is False


def test_generate_key_documents_when_its_429_or_503_made_no_key():
    from functions.keys import KEY_CREATED_HEADER

    responses = _operation("generate_key")["responses"]
    for status in ("429", "503"):
        header = _deref(responses[status])["headers"][KEY_CREATED_HEADER]
        assert header["schema"] == {"type": "string", "enum": ["false"]} and header["required"] is False, status


@pytest.mark.parametrize(
    "candidate",
    ["a", "0", "spire-server-1", "a.b_c-d", "a" * 63, "a" * 64, "", "-a", "a-", ".a", "a_", "A", "a b", "a/b", "ß", "a\n", "server:1"],
)
def test_the_server_name_schema_accepts_exactly_what_the_app_accepts(candidate):
    from shared.naming import validate_server_name

    schema = _deref(_header_parameters("sign_data")["X-SPIRE-Server-Name"])["schema"]
    ecma_pattern = schema["pattern"].replace("$", r"\Z")  # ECMA's $ matches only at the very end
    documented = bool(re.search(ecma_pattern, candidate)) and schema["minLength"] <= len(candidate) <= schema["maxLength"]
    try:
        validate_server_name(candidate)
        accepted = True
    except InvalidArgument:
        accepted = False
    assert documented == accepted
