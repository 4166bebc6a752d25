"""requirements.txt is the lock `make lock` writes from requirements.in: it must still agree with it.

Read from the files and the installed packages only (no index): a pin that no longer fits its range,
a requirement added or dropped without `make lock`, a pin without hashes, or a test environment that
runs other versions than the lock fails here.
"""

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devtools.host.requirements import deployed_distributions

ROOT = Path(__file__).resolve().parents[2]
LOCK, LOCK_INPUT = ROOT / "requirements.txt", ROOT / "requirements.in"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?P<options>(?: +--hash=sha256:[0-9a-f]{64})*)$")


def lock_lines() -> list[str]:
    # pip joins a line ending in a backslash with the next one: a pin and its --hash options.
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def pins() -> dict[str, str]:
    return {canonicalize_name(match["name"]): match["version"] for match in map(PIN.match, lock_lines())}


def test_every_line_of_the_lock_pins_one_version_with_its_hashes():
    for line in lock_lines():
        match = PIN.match(line)
        assert match and match["options"], f"not an exact pin with sha256 hashes: {line[:80]}"


def test_every_requirement_of_the_input_is_met_by_its_pin():
    locked = pins()
    for line in LOCK_INPUT.read_text(encoding="utf-8").splitlines():
        if line := line.split("#", 1)[0].strip():
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{requirement} is not in the lock: run make lock"
            assert requirement.specifier.contains(locked[name], prereleases=True), (
                f"{requirement} does not allow the locked {locked[name]}: run make lock"
            )


def test_the_test_environment_runs_the_locked_versions():
    for name, version in pins().items():
        assert metadata.version(name) == version, f"{name} {metadata.version(name)} installed, {version} locked: run make install"


def test_the_lock_holds_the_input_and_what_it_depends_on_and_nothing_else():
    closure = {canonicalize_name(distribution.metadata["Name"]) for distribution in deployed_distributions(LOCK_INPUT)}
    assert closure == set(pins()), "the lock is not requirements.in with its dependencies: run make lock"
