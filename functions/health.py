"""Health: are the settings valid, and do Blob storage and Key Vault answer this app?"""

from __future__ import annotations

import azure.functions as func

from functions.http import handles_errors, json_response
from shared.app_context import key_manager
from shared.errors import KeyManagerError

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def health(req: func.HttpRequest) -> func.HttpResponse:
    checks = (
        ("settings", lambda: key_manager()),
        ("blob_storage", lambda: key_manager().naming()),
        ("key_vault", lambda: key_manager().check_key_vault()),
    )
    for dependency, check in checks:
        try:
            check()
        except KeyManagerError as error:
            # The message names the failing setting or dependency; ids and secrets never enter it.
            return json_response(
                {"status": "unavailable", "dependency": dependency, "error": {"code": error.code, "message": error.message}},
                status=503,
            )
    return json_response({"status": "ok"})
