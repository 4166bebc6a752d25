import json

import azure.functions as func
import pytest

from functions.http import STATUS_BY_ERROR, error_response, json_body
from shared import errors


@pytest.mark.parametrize(
    "error, status",
    [
        (errors.InvalidArgument("x"), 400),
        (errors.PayloadTooLarge("x"), 413),
        (errors.NotFound("x"), 404),
        (errors.FailedPrecondition("x"), 409),
        (errors.ResourceExhausted("x", 7), 429),
        (errors.Unavailable("x"), 503),
        (errors.ConfigurationError("x"), 503),
        (errors.KeyManagerError("x"), 500),
    ],
)
def test_each_error_maps_to_one_status_with_a_json_error(error, status):
    response = error_response(error)
    assert response.status_code == status
    assert json.loads(response.get_body()) == {"error": {"code": error.code, "message": "x"}}
    assert response.mimetype == "application/json"


def test_throttling_tells_callers_when_to_retry():
    assert error_response(errors.ResourceExhausted("slow down", 7)).headers["Retry-After"] == "7"


def test_every_error_class_has_a_status():
    for cls in (errors.InvalidArgument, errors.NotFound, errors.FailedPrecondition, errors.ResourceExhausted, errors.Unavailable):
        assert cls in STATUS_BY_ERROR


def _request(body: bytes) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://localhost/api/keys", body=body)


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"key_id": NaN}', "NaN"),
        (b'{"key_id": Infinity}', "Infinity"),
        (b'{"key_id": -Infinity}', "-Infinity"),
        (b'{"salt_length": 1e999}', "too large"),
        (b'{"key_id": "a", "key_id": "b"}', "more than once"),
        (b'{"pss_options": {"salt_length": 1, "salt_length": 2}}', "more than once"),
    ],
)
def test_json_that_is_not_strict_json_is_invalid_argument(body, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        json_body(_request(body))


def test_strict_json_parses_with_numbers_and_nested_objects():
    body = b'{"a": 1.5, "b": -1, "c": {"d": [1e3, null, true]}}'
    assert json_body(_request(body)) == {"a": 1.5, "b": -1, "c": {"d": [1000.0, None, True]}}


def test_a_reserved_turn_goes_back_with_its_ticket_and_the_wait_to_the_millisecond():
    headers = error_response(errors.ResourceExhausted("wait for your turn", 0.4213, "q1w2e3r4t5y6u7i8")).headers
    assert headers["Retry-After"] == "1" and headers["retry-after-ms"] == "422" and headers["X-Retry-Turn"] == "q1w2e3r4t5y6u7i8"
    plain = error_response(errors.ResourceExhausted("slow down", 2.5)).headers
    assert plain["Retry-After"] == "3" and "retry-after-ms" not in plain and "X-Retry-Turn" not in plain
