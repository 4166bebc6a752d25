"""Fuzz the running app (devhost on the real stand-ins) from the OpenAPI document it serves, with schemathesis.

Every operation gets valid and invalid requests generated from the document (valid ones also to keys
made beforehand, and the document's examples), then a few hand-made requests that generators do not
make. Every request to a key or maintenance operation carries a valid token of an identity allowed
there, so that what is fuzzed is the app behind its caller gate. Each response must be no server error,
the JSON error ``{"error": {"code", "message"}}`` when it is an error, and what the document says: a
documented status, content type, headers and body.

The instance has a trust domain of its own, so the sweep it is fuzzed with cannot touch other tests'
keys. The test prints ``fuzz: N cases, ...`` with a line per operation, even under ``-q``.
"""

from __future__ import annotations

import base64
import os
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import unregister_string_format

from tests.hermetic import start_app_host

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATIONS = {
    "generate_key",
    "get_public_keys",
    "get_public_key",
    "sign_data",
    "health",
    "refresh_keys_now",
    "sweep_stale_keys_now",
    "openapi",
}
MAINTENANCE_OPERATIONS = {"refresh_keys_now", "sweep_stale_keys_now"}
ANONYMOUS_OPERATIONS = {"health", "openapi"}
# Examples per operation, half valid and half invalid; FUZZ_MAX_EXAMPLES=200 makes a longer run.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
# Each valid generate_key makes a real key in the local vault, and RSA-4096 keys take a while.
MAX_EXAMPLES_BY_OPERATION = {"generate_key": max(2, MAX_EXAMPLES * 3 // 5)}
# Made before fuzzing, so that generated gets and signs also reach keys that exist (of each kind of
# signer); the document's examples name x509-CA-A.
SEED_KEYS = {"x509-CA-A": "ec-p256", "fuzz-ec-p384": "ec-p384", "fuzz-rsa-2048": "rsa-2048"}
DIGEST = b'"LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="'
# Requests that generators do not make: (operation, path parameters, raw body).
EDGE_REQUESTS = [
    ("generate_key", {}, b"[" * 5000),  # deeper than Python's recursive JSON parser goes
    ("generate_key", {}, b'{"a": ' * 2000 + b"1" + b"}" * 2000),
    ("sign_data", {"key_id": "x509-CA-A"}, b"[" * 32768 + b"]" * 32768),  # 64 KiB exactly: parsed, not refused
    ("generate_key", {}, b'{"key_id": "x", "key_type": "ec-p256", "padding": "' + b"x" * 65536 + b'"}'),
    ("sign_data", {"key_id": "x509-CA-A"}, b"\xff\xfe{}"),
    ("sign_data", {"key_id": "x509-CA-A"}, b"\xef\xbb\xbf{}"),  # a UTF-8 byte order mark
    ("sign_data", {"key_id": "x509-CA-A"}, b"null"),
    ("sign_data", {"key_id": "x509-CA-A"}, b'{"data": "' + b"A" * 5000 + b'", "hash_algorithm": "SHA256"}'),
    ("sign_data", {"key_id": "x509-CA-A"}, b'{"data": "====", "hash_algorithm": "SHA256"}'),
    (
        "sign_data",
        {"key_id": "fuzz-rsa-2048"},
        b'{"data": ' + DIGEST + b', "pss_options": {"hash_algorithm": "SHA256", "salt_length": 1' + b"0" * 5000 + b"}}",
    ),
    ("sign_data", {"key_id": "x509-CA-A"}, b'{"data": ' + DIGEST + b', "hash_algorithm": "SHA256", "key_fingerprint": "\\ud800"}'),
    ("generate_key", {}, b'{"key_id": "\\ud800", "key_type": "\\udfff"}'),
    ("generate_key", {}, b'{"key_id": "' + b"a" * 81 + b'", "key_type": "ec-p256"}'),
]


@pytest.fixture
def digest_sized_bytes():
    """Generate `format: byte` values mostly as long as digests.

    schemathesis draws any number of bytes for `format: byte` and filters them by the field's pattern,
    so the document's digest patterns (exactly 32, 48 or 64 bytes) would reject nearly every draw and
    leave only the document's example. Drawing digest lengths often lets generated signs reach Key Vault.
    """
    digests = st.sampled_from([32, 48, 64]).flatmap(lambda size: st.binary(min_size=size, max_size=size))
    schemathesis.openapi.format("byte", st.one_of(digests, st.binary()).map(lambda data: base64.b64encode(data).decode()))
    yield
    unregister_string_format("byte")  # back to schemathesis's own


@pytest.fixture
def api(app_env):
    """One devhost instance in a trust domain of its own."""
    service = start_app_host(app_env)  # app_env's trust domain is this test's own
    try:
        yield service.url + "/api"
    finally:
        service.stop()


def _error_body_problem(response: schemathesis.Response) -> str | None:
    """Why an error response is not ``{"error": {"code", "message"}}`` JSON, or None when it is."""
    content_type = ", ".join(response.headers.get("content-type", []))  # lowercase names, list values
    if not content_type.startswith("application/json"):
        return f"Content-Type is {content_type!r}, not JSON"
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return "the body is not a JSON object"
    if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        return "the body has no error.code and error.message strings"
    return None


def _problems(case, response) -> list[str]:
    """What is wrong with a response: an error that is not the JSON error, or a failed schemathesis check."""
    problems = []
    if response.status_code >= 400:
        problem = _error_body_problem(schemathesis.Response.from_any(response))
        if problem:
            problems.append(problem)
    try:
        case.validate_response(response, checks=CHECKS)
    except (AssertionError, FailureGroup) as error:
        problems.append(str(error).strip())
    return problems


def _valid_requests(schema, operation):
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if any(parameter.name == "key_id" for parameter in operation.path_parameters):
        strategies += [operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"key_id": key_id}) for key_id in SEED_KEYS]
    strategies += schema.get_strategies_from_examples(operation)
    return st.one_of(strategies)


def _caller_headers(callers, name: str) -> dict[str, str]:
    """The Authorization header an operation is sent: the maintainer's, the SPIRE server's, or none where it is anonymous."""
    if name in ANONYMOUS_OPERATIONS:
        return {}
    return callers.headers(callers.maintainer if name in MAINTENANCE_OPERATIONS else None)


def _has_inputs(operation) -> bool:
    """Whether a request can get anything wrong (health and the document take nothing)."""
    return any(len(inputs) for inputs in (operation.path_parameters, operation.query, operation.headers, operation.body))


def test_fuzz_every_operation_from_the_served_document(api, callers, digest_sized_bytes, capsys):
    session = requests.Session()
    for key_id, key_type in SEED_KEYS.items():
        response = session.post(f"{api}/keys", json={"key_id": key_id, "key_type": key_type}, headers=callers.headers(), timeout=60)
        assert response.status_code == 200, response.text
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json", timeout=30)
    # Every request carries a valid token (_caller_headers) instead of one generated from the security
    # scheme, which invalid cases would spend themselves leaving out: the fuzzing is of what the gate lets in.
    schema.config.generation.update(with_security_parameters=False)
    cases: Counter[tuple[str, str]] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []

    def record(name: str, kind: str, request: str, case, response) -> None:
        cases[(name, kind)] += 1
        statuses[(name, response.status_code)] += 1
        problems = _problems(case, response)
        if problems:
            failures.append(f"{name} ({kind}): {request}\n  -> {response.status_code} {response.text[:300]}\n  " + "\n  ".join(problems))

    def fuzz(name: str, kind: str, strategy, max_examples: int) -> None:
        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # failures are collected by record(), not shrunk
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def call(case) -> None:
            response = case.call(session=session, headers=_caller_headers(callers, name), timeout=120)
            record(name, kind, case.as_curl_command(), case, response)

        call()

    # schemathesis leaves out the operation that serves the document it loaded; it is fuzzed all the same.
    operations = [result.ok() for result in schema.get_all_operations()] + [schema.find_operation_by_id("openapi")]
    for operation in operations:
        name = operation.definition.raw["operationId"]
        examples = MAX_EXAMPLES_BY_OPERATION.get(name, MAX_EXAMPLES)
        if _has_inputs(operation):
            fuzz(name, "valid", _valid_requests(schema, operation), examples // 2)
            fuzz(name, "invalid", operation.as_strategy(GenerationMode.NEGATIVE), examples - examples // 2)
        else:
            fuzz(name, "valid", _valid_requests(schema, operation), examples)

    for name, path_parameters, body in EDGE_REQUESTS:
        operation = schema.find_operation_by_id(name)
        url = api + operation.path.format(**path_parameters)
        headers = {"Content-Type": "application/json", **_caller_headers(callers, name)}
        response = session.request(operation.method.upper(), url, data=body, headers=headers, timeout=120)
        case = operation.Case(path_parameters=path_parameters, media_type="application/json")
        record(name, "edge", f"{operation.method.upper()} {url} with {body[:60]!r}... ({len(body)} bytes)", case, response)

    server_errors = sum(count for (_, status), count in statuses.items() if status >= 500)
    with capsys.disabled():
        print(f"\nfuzz: {sum(cases.values())} cases, {server_errors} server errors, {len(failures)} failures")
        for name in sorted(OPERATIONS):
            by_status = ", ".join(f"{status}: {count}" for (op, status), count in sorted(statuses.items()) if op == name)
            print(
                f"fuzz:   {name}: {cases[(name, 'valid')]} valid + {cases[(name, 'invalid')]} invalid"
                f" + {cases[(name, 'edge')]} edge requests ({by_status})"
            )
    assert {name for name, _ in cases} == OPERATIONS
    assert not failures, "\n\n".join(failures)
