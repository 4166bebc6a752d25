import pytest

from shared import app_context


@pytest.fixture(autouse=True)
def servers_built_from_settings():
    """Whatever servers a test installs serve that test only."""
    yield
    app_context.install_servers(None)
