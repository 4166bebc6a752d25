"""The functions the app registers: names, routes, methods and auth levels, read from the app itself."""

import azure.functions as func

import function_app

EXPECTED = {
    "generate_key": ("keys", ["POST"], "function"),
    "get_public_key": ("keys/{key_id}", ["GET"], "function"),
    "get_public_keys": ("keys", ["GET"], "function"),
    "sign_data": ("keys/{key_id}/sign", ["POST"], "function"),
    "health": ("health", ["GET"], "anonymous"),
}


def _http_triggers():
    for function in function_app.app.get_functions():
        trigger = function.get_trigger().get_dict_repr()
        if trigger["type"] == "httpTrigger":
            yield function.get_function_name(), trigger


def test_http_functions_declare_the_documented_routes_methods_and_auth_levels():
    declared = {
        name: (trigger["route"], [str(m.value if hasattr(m, "value") else m) for m in trigger["methods"]], trigger["authLevel"].value)
        for name, trigger in _http_triggers()
    }
    assert declared == EXPECTED


def test_the_app_defaults_to_function_keys():
    assert function_app.app.auth_level is func.AuthLevel.FUNCTION
