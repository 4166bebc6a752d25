from pathlib import Path

import pytest

from devtools.host.functions import FunctionInfo, Worker
from devtools.host.requirements import DeployedPackagesOnly, deployed_distributions


def names(requirements: Path) -> set[str]:
    return {distribution.metadata["Name"].lower() for distribution in deployed_distributions(requirements)}


def test_a_run_returning_a_value_without_a_return_binding_fails_as_in_the_worker():
    tick = FunctionInfo("tick", lambda timer: "a value", {"type": "timerTrigger", "name": "timer"}, has_return=False)
    with pytest.raises(RuntimeError, match=r"function 'tick' without a \$return binding returned a non-None value"):
        Worker().invoke(tick, None)


def test_deployed_packages_are_the_requirements_and_what_they_depend_on(tmp_path: Path):
    (tmp_path / "base.txt").write_text("# comment\nazure-functions>=2  # the SDK\n--index-url https://example.org\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("-r base.txt\nnot-installed-anywhere==1.0\n")
    deployed = names(requirements)
    assert {"azure-functions", "werkzeug", "markupsafe"} <= deployed  # werkzeug: azure-functions needs it
    assert "requests" not in deployed and "pytest" not in deployed


def test_extras_bring_their_dependencies_and_only_then(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("azure-functions\n")
    assert "pytest" not in names(requirements)  # azure-functions names it for its "dev" extra only
    requirements.write_text("azure-functions[dev]\n")
    assert "pytest" in names(requirements)


def test_only_installed_modules_outside_the_deployment_are_refused(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("azure-functions\n")
    guard = DeployedPackagesOnly(requirements)
    import azure.functions
    import json
    import pytest as dev_only
    assert not guard.refuses(azure.functions.__file__)
    assert not guard.refuses(json.__file__)  # the standard library
    assert not guard.refuses(__file__)  # the app's own files
    assert guard.refuses(dev_only.__file__)
