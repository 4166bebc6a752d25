"""The domain is plain Python: importing any of its modules loads no Azure SDK module.

Only the adapters (the Key Vault and id-blob modules) and the composition root import ``azure``; a
fresh interpreter is needed to tell, since the test process has loaded them already.
"""

import subprocess
import sys
from pathlib import Path

import pytest

DOMAIN_MODULES = [
    "shared.algorithms",
    "shared.callers",
    "shared.errors",
    "shared.identity_port",
    "shared.instances",
    "shared.key_manager",
    "shared.maintenance",
    "shared.naming",
    "shared.ownership",
    "shared.public_keys",
    "shared.server_ids",
    "shared.vault_port",
    "shared.version_cache",
]
REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_importing_a_domain_module_loads_no_azure_module(module):
    script = f"import sys, {module}; print(sorted(name for name in sys.modules if name.split('.')[0] == 'azure'))"
    loaded = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
