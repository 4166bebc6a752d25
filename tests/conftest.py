"""The suite sees no setting from the developer's shell: each test sets what it depends on (see tests.hermetic).

Cut here, before any test module is imported, since some read settings at import (the timer schedules).
"""

import os

from tests.hermetic import keep_only_process_environment

keep_only_process_environment(os.environ)
