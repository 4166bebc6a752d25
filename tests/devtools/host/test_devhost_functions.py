from pathlib import Path

import pytest

from devtools.host.functions import FunctionInfo, TraceContext, Worker, host_trace_context
from devtools.host.requirements import DeployedOnly, deployed_distributions


def names(requirements: Path) -> set[str]:
    return {distribution.metadata["Name"].lower() for distribution in deployed_distributions(requirements)}


def test_a_run_returning_a_value_without_a_return_binding_fails_as_in_the_worker():
    tick = FunctionInfo("tick", lambda timer: "a value", {"type": "timerTrigger", "name": "timer"}, has_return=False)
    with pytest.raises(RuntimeError, match=r"function 'tick' without a \$return binding returned a non-None value"):
        Worker().invoke(tick, None)


CALLER_TRACE_ID, CALLER_SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_an_invocation_continues_the_callers_trace_under_a_span_of_the_hosts():
    given = host_trace_context({"TraceParent": f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01", "tracestate": "vendor=x"})
    version, trace_id, span_id, flags = given.trace_parent.split("-")
    assert (version, trace_id, flags, given.trace_state) == ("00", CALLER_TRACE_ID, "01", "vendor=x")
    assert span_id != CALLER_SPAN_ID and len(span_id) == 16


@pytest.mark.parametrize("traceparent", [None, "", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-xyz", "01-" + "a" * 32])
def test_without_a_valid_traceparent_an_invocation_starts_a_trace(traceparent):
    headers = {} if traceparent is None else {"traceparent": traceparent, "tracestate": "vendor=x"}
    first, second = host_trace_context(headers), host_trace_context(headers)
    assert first.trace_parent.startswith("00-") and first.trace_parent.split("-")[1] != second.trace_parent.split("-")[1]
    assert first.trace_state == ""


def test_a_function_with_a_context_gets_the_invocations_trace_context():
    seen = []
    fn = FunctionInfo(
        "f", lambda req, context: seen.append(context.trace_context), {"type": "httpTrigger", "name": "req"}, requires_context=True
    )
    given = TraceContext(f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01")
    Worker().invoke(fn, None, given)
    assert seen == [given]


def test_deployed_packages_are_the_requirements_and_what_they_depend_on(tmp_path: Path):
    (tmp_path / "base.txt").write_text("# comment\nazure-functions>=2  # the SDK\n--index-url https://example.org\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("-r base.txt\nnot-installed-anywhere==1.0\n")
    deployed = names(requirements)
    assert {"azure-functions", "werkzeug", "markupsafe"} <= deployed  # werkzeug: azure-functions needs it
    assert "requests" not in deployed and "pytest" not in deployed


def test_a_lock_with_hashes_deploys_its_pins(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "azure-functions==2.3.0 \\\n"
        "    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000 \\\n"
        "    --hash=sha256:1111111111111111111111111111111111111111111111111111111111111111\n"
        "    # via -r requirements.in\n"
    )
    assert {"azure-functions", "werkzeug"} <= names(requirements)


def test_extras_bring_their_dependencies_and_only_then(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("azure-functions\n")
    assert "pytest" not in names(requirements)  # azure-functions names it for its "dev" extra only
    requirements.write_text("azure-functions[dev]\n")
    assert "pytest" in names(requirements)


def test_only_installed_modules_outside_the_deployment_are_refused(tmp_path: Path):
    (tmp_path / "requirements.txt").write_text("azure-functions\n")
    guard = DeployedOnly(tmp_path)
    import json

    import azure.functions
    import pytest as dev_only

    assert guard.refusal(azure.functions.__file__) is None
    assert guard.refusal(json.__file__) is None  # the standard library
    assert guard.refusal(__file__) is None  # files outside the app
    assert guard.refusal(str(tmp_path / "helpers.py")) is None  # the app's own files
    assert "not deployed by requirements.txt" in guard.refusal(dev_only.__file__)


def test_app_files_that_funcignore_leaves_out_are_refused(tmp_path: Path):
    (tmp_path / ".funcignore").write_text("tests\n/local_only.py\n*.tmp.py\n")
    guard = DeployedOnly(tmp_path)
    for left_out in ("tests/helpers.py", "tests/__init__.py", "local_only.py", "shared/scratch.tmp.py"):
        assert "left out of the deployment by .funcignore" in guard.refusal(str(tmp_path / left_out))
    for deployed in ("function_app.py", "shared/local_only.py", "shared/tests_helpers.py"):
        assert guard.refusal(str(tmp_path / deployed)) is None
    assert DeployedOnly(tmp_path / "no-funcignore").refusal(str(tmp_path / "no-funcignore" / "tests" / "x.py")) is None
