"""The Functions app: assembles the blueprints. Nothing here touches the network."""

import logging

import azure.functions as func

from functions.health import bp as health_blueprint
from functions.keys import bp as keys_blueprint
from functions.maintenance import bp as maintenance_blueprint
from functions.openapi import bp as openapi_blueprint

# The Azure SDK logs every request's headers at INFO; one line per operation of our own is enough.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

# No function keys: the key and maintenance functions prove each caller by its Entra ID token.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(keys_blueprint)
app.register_functions(health_blueprint)
app.register_functions(maintenance_blueprint)
app.register_functions(openapi_blueprint)
