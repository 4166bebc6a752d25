"""The API's OpenAPI document, served as it ships beside the app: functions/openapi.json."""

from __future__ import annotations

import functools
from pathlib import Path

import azure.functions as func

from functions.http import handles_errors

bp = func.Blueprint()

DOCUMENT_PATH = Path(__file__).resolve().parent / "openapi.json"


@functools.cache
def document() -> bytes:
    """The document's bytes, read on first use and kept: it never changes while the app runs."""
    return DOCUMENT_PATH.read_bytes()


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(document(), status_code=200, mimetype="application/json", charset="utf-8")
