import pytest

from devtools.host.routes import RouteNotFound, Router, RouteTemplate, split_path


def match(template: str, path: str):
    return RouteTemplate(template).match(split_path(path))


def test_literals_and_params():
    assert match("keys/{key_id}", "keys/abc") == {"key_id": "abc"}
    assert match("keys/{key_id}", "KEYS/abc") == {"key_id": "abc"}  # literals ignore case
    assert match("keys/{key_id}", "keys/ABC") == {"key_id": "ABC"}  # values keep it
    assert match("keys/{key_id}", "keys/abc/") == {"key_id": "abc"}
    assert match("keys/{key_id}", "keys") is None
    assert match("keys/{key_id}", "keys/a/b") is None
    assert match("keys/{key_id}", "other/abc") is None


def test_values_are_url_decoded_one_segment_each():
    assert match("keys/{key_id}", "keys/a%20b") == {"key_id": "a b"}
    assert match("keys/{key_id}", "keys/a%2Fb") == {"key_id": "a/b"}


def test_optional_and_default():
    assert match("items/{id?}", "items") == {}
    assert match("items/{id?}", "items/7") == {"id": "7"}
    assert match("items/{id=first}", "items") == {"id": "first"}


def test_constraints():
    assert match("n/{n:int}", "n/-42") == {"n": "-42"}
    assert match("n/{n:int}", "n/4x") is None
    assert match("n/{n:int}", "n/99999999999") is None  # beyond 32 bits
    assert match("w/{w:alpha}", "w/abcXYZ") == {"w": "abcXYZ"}
    assert match("w/{w:alpha}", "w/ab1") is None
    assert match("o/{n:int?}", "o") == {}
    # unknown constraints are parsed and ignored, even with ':' inside parentheses
    assert match("x/{x:minlength(3)}", "x/a") == {"x": "a"}
    assert match("x/{x:regex(^a:b$)}", "x/zz") == {"x": "zz"}
    assert match("x/{x:int:min(1)}", "x/zz") is None


def test_catch_all():
    assert match("files/{*rest}", "files/a/b%20c/d") == {"rest": "a/b c/d"}
    assert match("files/{*rest}", "files") == {}
    assert match("files/{*rest}", "other/a") is None


@pytest.mark.parametrize("template", ["a/{b", "a/x{b}", "a/{b-c}", "a/{}"])
def test_bad_templates(template):
    with pytest.raises(ValueError):
        RouteTemplate(template)


def make_router(prefix: str = "api") -> Router[str]:
    router: Router[str] = Router(prefix)
    router.add("keys/{key_id}", ["GET"], "get_key")
    router.add("keys/{key_id}/{action}", None, "key_action")
    router.add("keys/{key_id}/sign", ["POST"], "sign")
    router.add("keys/special", ["GET"], "special")
    router.add("keys/{key_id}", ["DELETE"], "delete_key")
    router.add("{*any}", ["OPTIONS"], "preflight")
    return router


def test_more_literal_segments_win_whatever_the_order():
    router = make_router()
    assert router.resolve("POST", "/api/keys/k1/sign").target == "sign"
    assert router.resolve("POST", "/api/keys/k1/rotate").params == {"key_id": "k1", "action": "rotate"}
    assert router.resolve("GET", "/api/keys/special").target == "special"
    assert router.resolve("GET", "/api/keys/other").target == "get_key"


def test_method_fallback_and_404_for_a_method_no_route_takes():
    router = make_router()
    # keys/special is GET-only, but keys/{key_id} takes DELETE
    assert router.resolve("DELETE", "/api/keys/special").target == "delete_key"
    # the catch-all (all-parameter) route only takes OPTIONS, yet it matches everything
    assert router.resolve("OPTIONS", "/api/keys/x").target == "preflight"
    with pytest.raises(RouteNotFound):  # the host has no 405: other routes take GET and DELETE here
        router.resolve("PUT", "/api/keys/abc")
    with pytest.raises(RouteNotFound):
        Router("api").resolve("GET", "/api/nothing")
    with pytest.raises(RouteNotFound):
        router.resolve("GET", "/v1/keys/abc")  # wrong prefix


def test_prefix():
    assert make_router().resolve("GET", "/API/keys/k").params == {"key_id": "k"}
    assert make_router("").resolve("GET", "/keys/k").target == "get_key"
    assert make_router("v1/api").resolve("GET", "/v1/api/keys/k").target == "get_key"
    with pytest.raises(RouteNotFound):
        make_router("v1/api").resolve("GET", "/v1/keys/k")
