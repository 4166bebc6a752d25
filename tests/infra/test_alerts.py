"""Alerts and Key Vault's audit events: what each alert watches, and that it watches what the app writes.

The log alerts read the requests and traces tables as the Functions host and the app fill them today;
their texts are checked against the app's own log calls and function names, so that rewording a log
message cannot silence an alert unnoticed.
"""

from __future__ import annotations

import ast
import json
import re

from shared.instances import shared_name_message
from tests.infra import template

ALERTS = "alerts.bicep"
ERROR_LEVELS = {"error", "exception", "critical"}


def log_alerts() -> dict[str, dict]:
    alerts = template.evaluate("logAlerts", ALERTS, {})
    return {alert["name"]: alert for alert in alerts}


def app_sources() -> list[ast.Module]:
    paths = [*sorted(template.ROOT.glob("functions/**/*.py")), *sorted(template.ROOT.glob("shared/**/*.py"))]
    return [ast.parse(path.read_text(), str(path)) for path in paths]


def error_log_formats() -> set[str]:
    """The format strings of the app's log calls at Error or above (severityLevel 3 and 4 in traces)."""
    return {
        node.args[0].value
        for tree in app_sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ERROR_LEVELS
        and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
    }


def function_names() -> set[str]:
    """The names the Functions host gives the app's functions: requests.name in Application Insights."""
    return {
        decorator.args[0].value
        for tree in app_sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute) and decorator.func.attr == "function_name"
    }


def test_each_log_alert_fires_on_any_row_of_its_query_over_application_insights():
    assert log_alerts().keys() == {"failed-signs", "server-errors", "stopped-server", "maintenance-failed"}
    rule = template.parsed()[ALERTS]["resources"]["logSearchAlerts"]
    assert rule["type"] == "Microsoft.Insights/scheduledQueryRules" and rule["config"]["loop_type"]["detail"]["array_name"] == "logAlerts"
    properties = rule["config"]["config"]["properties"]
    assert properties["scopes"] == ["appInsightsId"]
    (criterion,) = properties["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Count", "GreaterThan", 0)
    assert template.property_path(criterion["query"]) == ["alert", "query"]
    assert (properties["evaluationFrequency"], properties["windowSize"], properties["enabled"]) == ("PT5M", "PT15M", True)
    alerts_module = template.parsed()["main.bicep"]["modules"]["alerts"]["config"]
    assert "condition" not in alerts_module, "the alerts are created whether or not an action group is named"
    assert template.property_path(alerts_module["params"]["appInsightsId"]) == ["app", "outputs", "appInsightsId"]
    # Sampling would drop some of the rows the alerts count.
    sampling = json.loads((template.ROOT / "host.json").read_text())["logging"]["applicationInsights"]["samplingSettings"]
    assert {"Request", "Trace"} <= set(sampling["excludedTypes"].split(";"))


def test_failed_signs_are_sign_requests_of_proven_callers_answered_with_anything_but_2xx():
    query = log_alerts()["failed-signs"]["query"]
    assert query.startswith("requests |") and 'name == "sign_data"' in query and 'not(resultCode startswith "2")' in query
    assert 'resultCode !in ("401", "403")' in query  # an anonymous caller's refusals page nobody
    assert "toint(resultCode) >= 500" in log_alerts()["server-errors"]["query"]


def test_the_requests_the_alerts_name_are_the_apps_functions():
    lists = [found for alert in log_alerts().values() for found in re.findall(r'\bname (?:== ("[^"]+")|in \(([^)]+)\))', alert["query"])]
    named = {literal for found in lists for literal in re.findall(r'"([^"]+)"', "".join(found))}
    assert named == {"sign_data", "refresh_keys", "sweep_stale_keys"}
    assert named <= function_names()


def shared_name_message_is_logged_at_error() -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ERROR_LEVELS
        and any(isinstance(arg, ast.Call) and getattr(arg.func, "id", None) == "shared_name_message" for arg in node.args)
        for tree in app_sources() for node in ast.walk(tree)
    )


def test_the_log_lines_the_alerts_match_are_what_the_app_logs_at_error():
    assert shared_name_message_is_logged_at_error()
    messages = error_log_formats() | {shared_name_message("spire-a")}
    matched = [(kind, text) for alert in log_alerts().values() for kind, text in re.findall(r'message (startswith|contains) "([^"]+)"', alert["query"])]
    assert {text for _, text in matched} == {"Stopping: ", "two SPIRE server processes call as server", "Key refresh missed servers", "Key maintenance: "}
    for kind, text in matched:
        found = [m for m in messages if (m.startswith(text) if kind == "startswith" else text in m)]
        assert found, f"no log message at Error {kind} {text!r}"
    for alert in log_alerts().values():
        if "traces" in alert["query"]:
            assert "severityLevel >= 3" in alert["query"]


def test_key_vault_throttling_is_a_metric_alert_on_the_vaults_429s():
    alert = template.config("Microsoft.Insights/metricAlerts")
    properties = alert["properties"]
    assert properties["scopes"] == ["keyVaultId"]
    (criterion,) = properties["criteria"]["allOf"]
    assert (criterion["metricNamespace"], criterion["metricName"]) == ("Microsoft.KeyVault/vaults", "ServiceApiResult")
    assert criterion["dimensions"] == [{"name": "StatusCode", "operator": "Include", "values": ["429"]}]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Total", "GreaterThan", 0)
    alerts_module = template.parsed()["main.bicep"]["modules"]["alerts"]["config"]
    assert template.property_path(alerts_module["params"]["keyVaultId"]) == ["keyManagerRole", "outputs", "keyVaultId"]


def test_the_alerts_notify_the_action_group_only_when_one_is_named():
    assert template.evaluate("actionGroupIds", ALERTS, {"actionGroupId": ""}) == []
    group = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Insights/actionGroups/on-call"
    assert template.evaluate("actionGroupIds", ALERTS, {"actionGroupId": group}) == [group]
    assert template.config("Microsoft.Insights/scheduledQueryRules")["config"]["properties"]["actions"] == {"actionGroups": "actionGroupIds"}
    metric_actions = template.config("Microsoft.Insights/metricAlerts")["properties"]["actions"]
    assert template.evaluate(metric_actions, ALERTS, {"actionGroupId": group}) == [{"actionGroupId": group}]
    assert template.parameters("main.bicep")["alertActionGroupId"]["default"] == ""
    assert template.parsed()["main.bicep"]["modules"]["alerts"]["config"]["params"]["actionGroupId"] == "alertActionGroupId"
    mapped = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["alertActionGroupId"] == {"value": "${SPIRE_ALERT_ACTION_GROUP_ID=}"}


def test_key_vault_audit_events_go_to_the_workspace_for_a_created_or_an_existing_vault():
    setting = template.config("Microsoft.Insights/diagnosticSettings")
    assert setting["scope"] == "keyVault"
    assert setting["properties"]["workspaceId"] == "workspaceId"
    assert setting["properties"]["logs"] == [{"category": "AuditEvent", "enabled": True}]
    module = template.parsed()["main.bicep"]["modules"]["keyVaultDiagnostics"]["config"]
    assert "condition" not in module
    assert module["scope"]["function"]["parameters"]["resource_group_name"] == "vaultResourceGroupName"
    assert template.property_path(module["params"]["workspaceId"]) == ["app", "outputs", "logAnalyticsWorkspaceId"]
    workspace_symbol = template.the_resource("Microsoft.OperationalInsights/workspaces")[1]
    assert template.property_path(template.parsed()["app.bicep"]["outputs"]["logAnalyticsWorkspaceId"]["value"]) == [workspace_symbol, "id"]


def test_log_retention_is_a_parameter_of_at_least_30_days():
    assert template.config("Microsoft.OperationalInsights/workspaces")["properties"]["retentionInDays"] == "logRetentionDays"
    parameter = template.parameters("main.bicep")["logRetentionDays"]
    decorators = {d["type"]: d["argument"] for d in parameter["decorators"]}
    assert (parameter["default"], decorators["min_value"], decorators["max_value"]) == (90, 30, 730)
    assert template.parsed()["main.bicep"]["modules"]["app"]["config"]["params"]["logRetentionDays"] == "logRetentionDays"
