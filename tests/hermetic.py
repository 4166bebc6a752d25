"""The tests' environment: the settings each test gives the app, and nothing from the developer's shell or local.settings.json.

A setting the developer exported, or wrote in local.settings.json, must not change what a test sees
(STALE_KEY_AGE there would make a sweep test delete what it expects kept). So the suite runs with the
environment cut down to what a process needs, and devhost starts with that and the test's settings alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from devtools.stack.services import Service, start_devhost

# What a process needs on this machine (a shell, a locale, TLS trust, the Go toolchain) and what
# configures the suite itself (make sets SPIRE_SERVER and SPIRE_AGENT); no app setting is among them.
PROCESS_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "DEVSTACK_ECHO",
        "FUZZ_MAX_EXAMPLES",
        "SPIRE_SERVER",
        "SPIRE_AGENT",
    }
)
PROCESS_PREFIXES = ("LC_", "GO", "TEST_KEY_VAULT_")


def process_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` a process needs, and Azure's sign-in variables when the tests'
    vault is one the default credential chain signs in to (TEST_KEY_VAULT_URI without a token endpoint)."""
    kept = {name: value for name, value in environ.items() if name in PROCESS_VARIABLES or name.startswith(PROCESS_PREFIXES)}
    if environ.get("TEST_KEY_VAULT_URI", "").strip() and not environ.get("TEST_KEY_VAULT_TOKEN_ENDPOINT", "").strip():
        kept |= {name: value for name, value in environ.items() if name.startswith("AZURE_")}
    return kept


def keep_only_process_environment(environ: MutableMapping[str, str]) -> None:
    for name in set(environ) - set(process_environment(environ)):
        del environ[name]


def start_app_host(settings: Mapping[str, str], no_timers: bool = True) -> Service:
    """devhost serving the app with ``settings`` alone: no local.settings.json, no variable a test set in os.environ."""
    return start_devhost(0, {**process_environment(os.environ), **settings}, no_timers, local_settings=os.devnull)
