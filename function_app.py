"""The Functions app: sets up telemetry, assembles the blueprints. Nothing here touches the network."""

import logging

import azure.functions as func

from functions import telemetry

# Once, before any function runs: the exporter the app settings name, if any (docs/operations.md, Telemetry).
telemetry.configure()

# The blueprints after it, so that what they log on import (an invalid schedule) is exported too.
from functions.health import bp as health_blueprint  # noqa: E402
from functions.keys import bp as keys_blueprint  # noqa: E402
from functions.maintenance import bp as maintenance_blueprint  # noqa: E402
from functions.openapi import bp as openapi_blueprint  # noqa: E402

# The Azure SDK logs every request's headers at INFO; one line per operation of our own is enough.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

# No function keys: the key and maintenance functions prove each caller by its Entra ID token.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(keys_blueprint)
app.register_functions(health_blueprint)
app.register_functions(maintenance_blueprint)
app.register_functions(openapi_blueprint)
