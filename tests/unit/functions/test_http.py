import json

import pytest

from functions.http import STATUS_BY_ERROR, error_response
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
