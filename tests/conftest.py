"""The suite sees no setting from the developer's shell: each test sets what it depends on (see tests.hermetic).

Cut here, before any test module is imported, since some read settings at import (the timer schedules).
Whatever servers a test installs serve that test only.
"""

import os

import pytest

from tests.hermetic import keep_only_process_environment

keep_only_process_environment(os.environ)


@pytest.fixture(autouse=True)
def servers_built_from_settings():
    yield
    from shared import app_context  # imported once the environment is cut

    app_context.install_servers(None)
