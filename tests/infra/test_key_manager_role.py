"""The "SPIRE Key Manager" role: the deployment guide's permission list is the one source the template follows."""

from __future__ import annotations

import json
import re

from tests.infra import template

# Key Vault access-policy key permissions and the RBAC data actions Microsoft maps them to.
ACCESS_POLICY_DATA_ACTIONS = {
    "get": "Microsoft.KeyVault/vaults/keys/read",
    "list": "Microsoft.KeyVault/vaults/keys/read",
    "update": "Microsoft.KeyVault/vaults/keys/update/action",
    "create": "Microsoft.KeyVault/vaults/keys/create/action",
    "import": "Microsoft.KeyVault/vaults/keys/import/action",
    "delete": "Microsoft.KeyVault/vaults/keys/delete",
    "recover": "Microsoft.KeyVault/vaults/keys/recover/action",
    "backup": "Microsoft.KeyVault/vaults/keys/backup/action",
    "restore": "Microsoft.KeyVault/vaults/keys/restore/action",
    "sign": "Microsoft.KeyVault/vaults/keys/sign/action",
    "verify": "Microsoft.KeyVault/vaults/keys/verify/action",
}


def readme_permissions_section() -> str:
    guide = (template.ROOT / "docs" / "deployment.md").read_text()
    section = re.search(r"^## Key Vault permissions\n(.*?)(?=^##? )", guide, re.S | re.M)
    assert section, "docs/deployment.md has no Key Vault permissions section"
    return section.group(1)


def readme_role() -> dict:
    block = re.search(r"```json\n(.*?)```", readme_permissions_section(), re.S)
    assert block, "the Key Vault permissions section shows no role definition"
    return json.loads(block.group(1))


def readme_access_policy() -> list[str]:
    command = re.search(r"--key-permissions ([a-z ]+)", readme_permissions_section())
    assert command, "the Key Vault permissions section shows no access policy"
    return command.group(1).split()


def template_role() -> dict:
    return template.config("Microsoft.Authorization/roleDefinitions")["properties"]


def test_the_templates_role_has_exactly_the_readmes_data_actions():
    readme, bicep = readme_role(), template_role()
    (permissions,) = bicep["permissions"]
    in_readme, in_template = set(readme["DataActions"]), set(permissions["dataActions"])
    assert in_readme - in_template == set(), "in the README's role but not the template's"
    assert in_template - in_readme == set(), "in the template's role but not the README's"
    assert len(permissions["dataActions"]) == len(in_template), "a data action listed twice"
    assert readme["Actions"] == permissions["actions"] == []
    assert permissions["notActions"] == permissions["notDataActions"] == []
    assert bicep["roleName"] == "roleName"  # the module's parameter
    assert bicep["type"] == "CustomRole"


def test_each_deployment_names_a_role_of_its_own_unless_told_otherwise():
    """Role names are unique in a tenant: a fixed default would fail the second environment's deployment."""
    main = template.parsed()["main.bicep"]
    assert main["modules"]["keyManagerRole"]["config"]["params"]["roleName"] == "roleName"
    choice = main["variables"]["roleName"]["value"]["operator"]
    assert choice["type"] == "conditional"
    assert choice["operands"]["true_value"] == f"{readme_role()['Name']} (${{resourceToken}})"  # per environment
    assert choice["operands"]["false_value"] == "keyManagerRoleName"
    assert template.parameters("main.bicep")["keyManagerRoleName"]["default"] == ""
    mapped = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["keyManagerRoleName"] == {"value": "${SPIRE_KEY_MANAGER_ROLE_NAME=}"}


def test_the_readmes_access_policy_grants_the_same_as_its_role():
    permissions = readme_access_policy()
    unknown = set(permissions) - ACCESS_POLICY_DATA_ACTIONS.keys()
    assert not unknown, f"no known data action for access-policy permissions {sorted(unknown)}"
    assert {ACCESS_POLICY_DATA_ACTIONS[p] for p in permissions} == set(readme_role()["DataActions"])


def test_the_role_includes_recover_and_nothing_that_destroys_or_exports_keys_or_that_the_app_never_does():
    actions = set(readme_role()["DataActions"])
    assert "Microsoft.KeyVault/vaults/keys/recover/action" in actions
    assert all(action.startswith("Microsoft.KeyVault/vaults/keys/") for action in actions)
    assert not {a for a in actions if re.search(r"purge|backup|restore|import|release|encrypt|decrypt|wrap|\*", a)}
    # SPIRE verifies signatures with the public keys it lists; the app never asks Key Vault to.
    assert "Microsoft.KeyVault/vaults/keys/verify/action" not in actions


def test_the_role_is_assigned_to_the_apps_identity_on_the_vault_only():
    file, role_symbol, _ = template.the_resource("Microsoft.Authorization/roleDefinitions")
    assignments = [
        resource["config"]
        for f, _, resource in template.resources("Microsoft.Authorization/roleAssignments")
        if template.property_path(resource["config"]["properties"]["roleDefinitionId"]) == [role_symbol, "id"]
    ]
    (assignment,) = assignments
    vault = template.parsed()[file]["resources"][assignment["scope"]]
    assert vault["type"] == "Microsoft.KeyVault/vaults" and vault["existing"]
    assert vault["config"]["name"] == "keyVaultName"
    assert assignment["properties"]["principalId"] == "principalId"
    role_module = template.parsed()["main.bicep"]["modules"]["keyManagerRole"]["config"]
    assert role_module["params"]["keyVaultName"] == "vaultName"
    assert template.property_path(role_module["params"]["principalId"]) == ["identity", "outputs", "principalId"]


def test_the_role_can_be_assigned_in_the_vaults_resource_group_only():
    (scope,) = template_role()["assignableScopes"]
    operands = scope["operator"]["operands"]  # resourceGroup().id: the group the module is deployed in
    assert operands["operand_2"] == "id"
    function = operands["operand_1"]["function"]
    assert function["type"] == "resource_group" and function["parameters"]["resource_group_name"] is None
