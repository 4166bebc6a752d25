"""The handlers' gate in unit tests: the in-process tenant's tokens, and who may act as which server."""

import pytest

from shared import app_context
from tests.unit import tokens

# Every name the handler tests act as; "" is the default server.
SERVER_NAMES = ("", "a", "b", "c", "spire-a")


@pytest.fixture(autouse=True)
def callers(monkeypatch):
    gate = tokens.gate({tokens.SERVER_CALLER: SERVER_NAMES})
    monkeypatch.setattr(app_context, "_callers", gate)
    return gate
