"""The Functions app: assembles the blueprints. Nothing here touches the network."""

import azure.functions as func

from functions.health import bp as health_blueprint
from functions.keys import bp as keys_blueprint
from functions.maintenance import bp as maintenance_blueprint

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(keys_blueprint)
app.register_functions(health_blueprint)
app.register_functions(maintenance_blueprint)
