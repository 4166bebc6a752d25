"""The Bicep template, read offline: hosting, identity, storage, monitoring, Key Vault, no secrets.

Bicep cannot be compiled or deployed here, so these tests parse every file under infra/ and assert
what a deployment would otherwise show.
"""

from __future__ import annotations

import json
import re

import yaml

from tests.infra import template


def test_every_bicep_file_parses():
    files = template.parsed()
    assert {"main.bicep", "app.bicep", "identity.bicep", "key-vault.bicep", "key-manager-role.bicep"} <= files.keys()
    referenced = {module["detail"]["path"] for parse in files.values() for module in parse.get("modules", {}).values()}
    assert referenced <= files.keys(), f"modules without a file: {sorted(referenced - files.keys())}"


def test_the_plan_is_flex_consumption_on_linux():
    plan = template.config("Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True  # Linux
    site_file, _, site = template.the_resource("Microsoft.Web/sites")
    assert site["config"]["kind"] == "functionapp,linux"
    plan_symbol = template.the_resource("Microsoft.Web/serverfarms")[1]
    assert template.property_path(site["config"]["properties"]["serverFarmId"]) == [plan_symbol, "id"]


def test_the_runtime_is_python_3_13():
    runtime = template.config("Microsoft.Web/sites")["properties"]["functionAppConfig"]["runtime"]
    assert runtime == {"name": "python", "version": "3.13"}


def test_https_only_tls_1_2_and_no_ftp_or_basic_publishing_credentials():
    properties = template.config("Microsoft.Web/sites")["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["scmMinTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    site_symbol = template.the_resource("Microsoft.Web/sites")[1]
    policies = {
        resource["config"]["name"]: resource["config"]
        for _, _, resource in template.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    assert policies.keys() == {"ftp", "scm"}
    for policy in policies.values():
        assert policy["parent"] == site_symbol
        assert policy["properties"] == {"allow": False}


def test_the_app_runs_as_the_user_assigned_identity_everywhere():
    site = template.config("Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    deployment = site["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    settings = template.app_settings()
    assert settings["USE_MSI"] == "true"
    for name in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"):
        assert template.references(settings[name], "app.bicep") == "identityClientId"
    app_params = template.parsed()["main.bicep"]["modules"]["app"]["config"]["params"]
    assert template.property_path(app_params["identityClientId"]) == ["identity", "outputs", "clientId"]
    assert template.property_path(app_params["identityId"]) == ["identity", "outputs", "id"]


def test_storage_connections_are_identity_based_and_the_account_refuses_shared_keys():
    storage_file, storage_symbol, storage = template.the_resource("Microsoft.Storage/storageAccounts")
    properties = storage["config"]["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["defaultToOAuthAuthentication"] is True
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    settings = template.app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    for name in ("AzureWebJobsStorage__blobServiceUri", "KEY_METADATA_STORAGE__blobServiceUri"):
        assert template.property_path(settings[name]) == [storage_symbol, "properties", "primaryEndpoints", "blob"]
    assert "AzureWebJobsStorage" not in settings and "KEY_METADATA_STORAGE" not in settings


def test_the_metadata_blob_lives_in_a_private_container_of_the_apps_storage():
    blob = template.app_settings()["KEY_METADATA_BLOB"]
    container_symbol, _, blob_name = re.fullmatch(r"\$\{(\w+)\.name\}/(.+)", blob).group(1, 0, 2)
    containers = {symbol: resource["config"] for _, symbol, resource in template.resources("Microsoft.Storage/storageAccounts/blobServices/containers")}
    assert containers[container_symbol]["properties"]["publicAccess"] == "None"
    assert blob_name


def test_application_insights_uses_entra_authentication_only():
    insights_symbol = template.the_resource("Microsoft.Insights/components")[1]
    insights = template.config("Microsoft.Insights/components")
    assert insights["properties"]["DisableLocalAuth"] is True
    assert template.config("Microsoft.OperationalInsights/workspaces")["properties"]["features"]["disableLocalAuth"] is True
    settings = template.app_settings()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert template.property_path(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == [insights_symbol, "properties", "ConnectionString"]


def test_role_assignments_are_the_identitys_at_the_narrowest_scope():
    assignments = {symbol: (file, resource["config"]) for file, symbol, resource in template.resources("Microsoft.Authorization/roleAssignments")}
    scopes = {}
    for symbol, (file, assignment) in assignments.items():
        assert assignment["properties"]["principalType"] == "ServicePrincipal"
        assert template.references(assignment["properties"]["principalId"], file) in ("identityPrincipalId", "principalId")
        scoped = template.parsed()[file]["resources"][assignment["scope"]]
        scopes[symbol] = scoped["type"]
    # Each on one resource: never a resource group or subscription.
    assert scopes == {
        "keyManagerAssignment": "Microsoft.KeyVault/vaults",
        "storageBlobDataOwnerAssignment": "Microsoft.Storage/storageAccounts",
        "monitoringMetricsPublisherAssignment": "Microsoft.Insights/components",
    }


def test_a_new_key_vault_uses_rbac_soft_delete_and_purge_protection():
    properties = template.config("Microsoft.KeyVault/vaults")["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] is True
    assert "accessPolicies" not in properties


def test_an_existing_key_vault_can_be_named_instead():
    main = template.parsed()["main.bicep"]
    assert main["parameters"]["keyVaultName"]["default"] == ""
    assert main["modules"]["keyVault"]["config"]["condition"] == "createKeyVault"
    role_scope = main["modules"]["keyManagerRole"]["config"]["scope"]["function"]
    assert role_scope["type"] == "resource_group"
    assert role_scope["parameters"]["resource_group_name"] == "vaultResourceGroupName"


def test_no_secret_is_read_or_written_by_the_template():
    for path in sorted(template.INFRA.glob("**/*.bicep")):
        text = path.read_text()
        # list*() functions (listKeys, listSecrets...) return keys and connection strings.
        assert not re.search(r"\blist[A-Z]\w*\(", text), f"{path.name} reads a secret with a list function"
        assert "@secure" not in text, f"{path.name} takes a secret parameter"
        assert not re.search(r"AccountKey=|SharedAccessSignature|\.vault\.azure\.net/secrets", text)
    outputs = {name: output["value"] for parse in template.parsed().values() for name, output in parse.get("outputs", {}).items()}
    leaking = {name for name, value in outputs.items() if re.search(r"ConnectionString|InstrumentationKey|primaryKey|masterKey", str(value))}
    assert not leaking, f"outputs that hold a secret or a connection string: {sorted(leaking)}"


def test_outputs_give_the_api_base_url_and_how_to_read_the_host_key():
    outputs = template.parsed()["main.bicep"]["outputs"]
    assert outputs["APP_URL"]["value"] == "https://${app.outputs.defaultHostName}"  # the plugin adds /api/keys
    command = outputs["HOST_KEY_COMMAND"]["value"]
    assert command.startswith("az functionapp keys list ") and "--query functionKeys.default" in command


def test_azure_yaml_deploys_this_folder_as_a_python_function_app():
    project = yaml.safe_load((template.ROOT / "azure.yaml").read_text())
    service = project["services"]["api"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    # azd finds the app to deploy to by this tag.
    tags = template.config("Microsoft.Web/sites")["tags"]["function"]
    assert tags["type"] == "union" and tags["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


def test_the_package_leaves_the_template_out():
    ignored = (template.ROOT / ".funcignore").read_text().split()
    assert {"infra", "azure.yaml", ".azure"} <= set(ignored)


def test_azd_maps_every_required_parameter_and_every_variable_the_readme_sets():
    mapped = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]
    required = {name for name, parameter in template.parameters("main.bicep").items() if parameter["default"] is None}
    assert required <= mapped.keys(), f"azd cannot fill {sorted(required - mapped.keys())}"
    assert mapped.keys() <= template.parameters("main.bicep").keys()
    variables = {re.fullmatch(r"\$\{(\w+)=?\}", entry["value"]).group(1) for entry in mapped.values()}
    readme = (template.ROOT / "README.md").read_text()
    assert set(re.findall(r"^azd env set (\w+)", readme, re.M)) <= variables
