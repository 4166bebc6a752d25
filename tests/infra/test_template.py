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
    assert {"main.bicep", "app.bicep", "identity.bicep", "key-vault.bicep", "key-manager-role.bicep", "api-application.bicep"} <= files.keys()
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


def test_outputs_give_what_the_plugin_data_needs_and_no_key():
    outputs = template.parsed()["main.bicep"]["outputs"]
    assert outputs["APP_URL"]["value"] == "https://${app.outputs.defaultHostName}"  # the plugin adds /api/keys
    assert outputs["API_CLIENT_ID"]["value"] == "entraApiClientId"  # given or created
    assert template.evaluate(outputs["TENANT_ID"]["value"], "main.bicep", {"tenant()": {"tenantId": "the tenant"}}) == "the tenant"
    # Callers prove themselves with Entra ID tokens: no output names or fetches a function or host key.
    every_output = json.dumps([parse.get("outputs", {}) for parse in template.parsed().values()])
    assert not re.search(r"(?i)functionKeys|host.?key|masterKey|keys list|listKeys|x-functions-key", every_output)


def test_azure_yaml_deploys_this_folder_as_a_python_function_app():
    project = yaml.safe_load((template.ROOT / "azure.yaml").read_text())
    service = project["services"]["api"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    # azd finds the app to deploy to by this tag.
    tags = template.config("Microsoft.Web/sites")["tags"]["function"]
    assert tags["type"] == "union" and tags["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


def test_azure_yaml_requires_an_azd_that_reads_json_parameters_from_variables():
    """azd 1.23.4 parses a variable mapped to an array or object parameter as JSON; earlier ones fail on it."""
    mapped = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]
    parameters = template.parameters("main.bicep")
    assert {name for name in mapped if parameters[name]["type"] in ("array", "object")}, "no JSON parameter: drop the requirement"
    project = yaml.safe_load((template.ROOT / "azure.yaml").read_text())
    assert project["requiredVersions"] == {"azd": ">= 1.23.4"}


def test_the_package_leaves_the_template_out():
    ignored = (template.ROOT / ".funcignore").read_text().split()
    assert {"infra", "azure.yaml", ".azure"} <= set(ignored)


def test_azd_maps_every_required_parameter_and_every_variable_the_readme_sets():
    mapped = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]
    required = {name for name, parameter in template.parameters("main.bicep").items() if parameter["default"] is None}
    assert required <= mapped.keys(), f"azd cannot fill {sorted(required - mapped.keys())}"
    assert mapped.keys() <= template.parameters("main.bicep").keys()
    variables = {re.fullmatch(r"\$\{(\w+)(=[^}]*)?\}", entry["value"]).group(1) for entry in mapped.values()}
    guide = (template.ROOT / "docs" / "deployment.md").read_text()
    assert set(re.findall(r"^azd env set (\w+)", guide, re.M)) <= variables


NETWORK_PARAMETERS = {"allowedInboundIpRanges": "SPIRE_ALLOWED_INBOUND_IP_RANGES", "allowedSubnetIds": "SPIRE_ALLOWED_SUBNET_IDS"}


def inbound_access(**networks: list[str]) -> tuple[list[dict], str]:
    """The function app's access rules and default action, for the network parameters given."""
    site_config = template.config("Microsoft.Web/sites")["properties"]["siteConfig"]
    values = dict.fromkeys(NETWORK_PARAMETERS, []) | networks
    return (
        template.evaluate(site_config["ipSecurityRestrictions"], "app.bicep", values),
        template.evaluate(site_config["ipSecurityRestrictionsDefaultAction"], "app.bicep", values),
    )


def test_without_named_networks_every_address_may_reach_the_app():
    assert inbound_access() == ([], "Allow")


def test_named_ranges_and_subnets_are_the_only_networks_that_reach_the_app():
    subnet = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/spire"
    rules, default_action = inbound_access(allowedInboundIpRanges=["203.0.113.0/24", "198.51.100.7/32"], allowedSubnetIds=[subnet])
    assert default_action == "Deny"
    assert [(rule["action"], rule.get("ipAddress"), rule.get("vnetSubnetResourceId")) for rule in rules] == [
        ("Allow", "203.0.113.0/24", None),
        ("Allow", "198.51.100.7/32", None),
        ("Allow", None, subnet),
    ]
    assert len({rule["priority"] for rule in rules}) == len(rules) and len({rule["name"] for rule in rules}) == len(rules)
    assert all(len(rule["name"]) <= 32 for rule in rules)  # App Service's limit
    assert inbound_access(allowedInboundIpRanges=["203.0.113.0/24"])[1] == "Deny"
    assert inbound_access(allowedSubnetIds=[subnet])[1] == "Deny"


def test_the_network_parameters_default_to_no_restriction_and_azd_maps_them():
    parameters = template.parameters("main.bicep")
    app_params = template.parsed()["main.bicep"]["modules"]["app"]["config"]["params"]
    mapped = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]
    for name, variable in NETWORK_PARAMETERS.items():
        assert parameters[name]["type"] == "array" and parameters[name]["default"] == []
        assert app_params[name] == name
        assert mapped[name] == {"value": f"${{{variable}=}}"}


def test_the_scm_site_keeps_its_own_access_rules():
    """Deployments come from operators and CI, not from the SPIRE servers' networks; Entra ID and RBAC gate them."""
    site_config = template.config("Microsoft.Web/sites")["properties"]["siteConfig"]
    assert site_config["scmIpSecurityRestrictionsUseMain"] is False
    assert site_config["scmIpSecurityRestrictionsDefaultAction"] == "Allow"


GRAPH = "api-application.bicep"


def graph_resources(resource_type: str) -> dict[str, dict]:
    return {symbol: resource for symbol, resource in template.parsed()[GRAPH]["resources"].items() if resource["type"] == resource_type}


def test_the_graph_extension_is_declared_and_pinned():
    assert template.parsed()[GRAPH]["extensions"] == {"microsoftGraphV1": {}}
    config = json.loads((template.INFRA / "bicepconfig.json").read_text())
    assert re.fullmatch(r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+", config["extensions"]["microsoftGraphV1"])
    assert all(not parse.get("extensions") for file, parse in template.parsed().items() if file != GRAPH)


def test_the_created_api_application_takes_v2_tokens_for_api_appid_and_has_no_credential():
    applications = graph_resources("Microsoft.Graph/applications")
    assert applications.keys() == {"application", "applicationIdentifierUri"}
    variables = template.parsed()[GRAPH]["variables"]
    for application in applications.values():
        config = application["config"]
        assert config["uniqueName"] == "uniqueName"  # two declarations of one application
        assert template.evaluate(config["signInAudience"], GRAPH, {}) == "AzureADMyOrg"
        assert template.evaluate(config["api"], GRAPH, {}) == {"requestedAccessTokenVersion": 2}
        assert config["appRoles"] == ["callerRole"]
        assert not {"passwordCredentials", "keyCredentials", "web", "spa", "publicClient"} & config.keys()
    # The appId exists once Entra has created the application: the second declaration adds the URI.
    assert "identifierUris" not in applications["application"]["config"]
    assert applications["applicationIdentifierUri"]["config"]["identifierUris"] == ["api://${application.appId}"]
    role = variables["callerRole"]["value"]
    assert (role["value"], role["allowedMemberTypes"], role["isEnabled"]) == ("KeyManager.Caller", ["Application"], True)
    # uniqueName is unique in the tenant: one application per environment.
    module = template.parsed()["main.bicep"]["modules"]["apiApplication"]["config"]["config"]["params"]
    assert module["uniqueName"] == "spire-key-manager-api-${resourceToken}"


def test_entra_issues_tokens_only_to_the_listed_identities_of_a_created_application():
    (service_principal,) = graph_resources("Microsoft.Graph/servicePrincipals").values()
    assert service_principal["config"]["appRoleAssignmentRequired"] is True
    assert template.property_path(service_principal["config"]["appId"]) == ["applicationIdentifierUri", "appId"]
    (assignments,) = graph_resources("Microsoft.Graph/appRoleAssignedTo").values()
    loop = assignments["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "callerObjectIds"
    assignment = assignments["config"]["config"]
    assert assignment["principalId"] == loop["item_name"]
    assert template.property_path(assignment["resourceId"]) == ["servicePrincipal", "id"]
    assert template.property_path(assignment["appRoleId"]) == ["callerRole", "id"]
    callers = template.evaluate(
        "callerObjectIds", GRAPH,
        {"spireServerIdentities": {"AAAA": ["spire-a"], "bbbb": [""]}, "maintenanceIdentities": ["aaaa", "cccc"]},
    )
    assert callers == ["aaaa", "bbbb", "cccc"]  # every listed identity, once
    module = template.parsed()["main.bicep"]["modules"]["apiApplication"]["config"]["config"]["params"]
    assert (module["spireServerIdentities"], module["maintenanceIdentities"]) == ("spireServerIdentities", "maintenanceIdentities")
