"""The hardened template: private networking, the vault's lock and SKU, the id blobs' history, storage
redundancy, warm instances and concurrency, each a parameter with a safe default that azd maps."""

from __future__ import annotations

import ast
import json

import pytest

from shared.settings import load_settings
from tests.infra import template

MAPPED = json.loads((template.INFRA / "main.parameters.json").read_text())["parameters"]


def main_parameter(name: str) -> dict:
    return template.parameters("main.bicep")[name]


def modules() -> dict[str, dict]:
    return template.parsed()["main.bicep"]["modules"]


def app_parameter(name: str):
    return modules()["app"]["config"]["params"][name]


@pytest.mark.parametrize(
    "name, default, variable",
    [
        ("privateNetworking", True, "SPIRE_PRIVATE_NETWORKING"),
        ("virtualNetworkAddressPrefix", "10.70.0.0/16", "SPIRE_VIRTUAL_NETWORK_ADDRESS_PREFIX"),
        ("appSubnetAddressPrefix", "10.70.0.0/24", "SPIRE_APP_SUBNET_ADDRESS_PREFIX"),
        ("privateEndpointSubnetAddressPrefix", "10.70.1.0/24", "SPIRE_PRIVATE_ENDPOINT_SUBNET_ADDRESS_PREFIX"),
        ("storageSkuName", "Standard_GRS", "SPIRE_STORAGE_SKU"),
        ("keyProtection", "software", "SPIRE_KEY_PROTECTION"),
        ("keyVaultDeleteLock", True, "SPIRE_KEY_VAULT_DELETE_LOCK"),
        ("logRetentionDays", 90, "SPIRE_LOG_RETENTION_DAYS"),
        ("alwaysReadyInstanceCount", 1, "SPIRE_ALWAYS_READY_INSTANCES"),
        ("httpPerInstanceConcurrency", 16, "SPIRE_HTTP_PER_INSTANCE_CONCURRENCY"),
    ],
)
def test_each_hardening_parameter_has_a_safe_default_that_azd_maps(name, default, variable):
    assert main_parameter(name)["default"] == default
    given = "" if default == "" else str(default).lower() if isinstance(default, bool) else str(default)
    assert MAPPED[name] == {"value": f"${{{variable}={given}}}"}


def network_access(file: str, resource_type: str, private: bool) -> tuple[str, str]:
    properties = template.config(resource_type)["properties"]
    values = {"privateNetworking": private}
    return (
        template.evaluate(properties["publicNetworkAccess"], file, values),
        template.evaluate(properties["networkAcls"]["defaultAction"], file, values),
    )


@pytest.mark.parametrize("file, resource_type", [("key-vault.bicep", "Microsoft.KeyVault/vaults"), ("app.bicep", "Microsoft.Storage/storageAccounts")])
def test_with_private_networking_the_vault_and_storage_refuse_public_traffic(file, resource_type):
    assert network_access(file, resource_type, private=True) == ("Disabled", "Deny")
    assert network_access(file, resource_type, private=False) == ("Enabled", "Allow")


def test_private_networking_puts_the_app_on_a_subnet_delegated_to_flex_consumption():
    assert modules()["network"]["config"]["condition"] == "privateNetworking"
    network = template.config("Microsoft.Network/virtualNetworks")
    subnets = {subnet["name"]: subnet["properties"] for subnet in network["properties"]["subnets"]}
    assert subnets["app"]["delegations"][0]["properties"]["serviceName"] == "Microsoft.App/environments"
    # The app still reaches Entra ID and Application Insights; the endpoints need no way out.
    assert (subnets["app"]["defaultOutboundAccess"], subnets["private-endpoints"]["defaultOutboundAccess"]) == (True, False)
    assert (subnets["app"]["addressPrefix"], subnets["private-endpoints"]["addressPrefix"]) == ("appSubnetPrefix", "privateEndpointSubnetPrefix")
    site_subnet = template.config("Microsoft.Web/sites")["properties"]["virtualNetworkSubnetId"]
    assert template.evaluate(site_subnet, "app.bicep", {"privateNetworking": True, "appSubnetId": "the subnet"}) == "the subnet"
    assert template.evaluate(site_subnet, "app.bicep", {"privateNetworking": False, "appSubnetId": ""}) is None
    outputs = {"network": {"outputs": {"appSubnetId": "app subnet"}}}
    assert template.evaluate(app_parameter("appSubnetId"), "main.bicep", {"privateNetworking": True, **outputs}) == "app subnet"
    assert app_parameter("privateNetworking") == "privateNetworking"


def network_output(name: str) -> str:
    """A network.bicep output, with each zone's and subnet's id standing for its name."""
    zones = template.parsed()["network.bicep"]["variables"]["privateDnsZoneNames"]["value"]
    subnets = template.config("Microsoft.Network/virtualNetworks")["properties"]["subnets"]
    deployed = {
        "privateDnsZones": [{"id": zone} for zone in zones],
        "virtualNetwork": {"properties": {"subnets": [{"id": subnet["name"]} for subnet in subnets]}},
    }
    return template.evaluate(template.parsed()["network.bicep"]["outputs"][name]["value"], "network.bicep", deployed)


def test_the_private_dns_zones_resolve_the_vault_and_blob_names_inside_the_network():
    assert network_output("vaultDnsZoneId") == "privatelink.vaultcore.azure.net"
    assert network_output("blobDnsZoneId") == "privatelink.blob.${environment().suffixes.storage}"
    assert (network_output("appSubnetId"), network_output("privateEndpointSubnetId")) == ("app", "private-endpoints")
    links = template.config("Microsoft.Network/privateDnsZones/virtualNetworkLinks")["config"]
    assert links["properties"]["registrationEnabled"] is False
    assert template.property_path(links["properties"]["virtualNetwork"]["id"]) == ["virtualNetwork", "id"]


def test_the_vault_and_the_blob_endpoint_each_get_a_private_endpoint_in_their_zone():
    vault = modules()["keyVaultPrivateEndpoint"]["config"]
    assert vault["condition"] == "privateNetworking"
    vault_params = vault["config"]["params"]
    assert vault_params["groupId"] == "vault"
    assert template.property_path(vault_params["serviceId"]) == ["keyManagerRole", "outputs", "keyVaultId"]  # created or existing
    zones = {"network": {"outputs": {"vaultDnsZoneId": "vault zone", "privateEndpointSubnetId": "endpoints"}}}
    assert template.evaluate(vault_params["privateDnsZoneId"], "main.bicep", {"privateNetworking": True, **zones}) == "vault zone"
    assert template.evaluate(vault_params["subnetId"], "main.bicep", {"privateNetworking": True, **zones}) == "endpoints"
    storage_endpoint = template.parsed()["app.bicep"]["modules"]["storagePrivateEndpoint"]["config"]
    assert storage_endpoint["condition"] == "privateNetworking"
    storage_params = storage_endpoint["config"]["params"]
    storage_symbol = template.the_resource("Microsoft.Storage/storageAccounts")[1]
    assert storage_params["groupId"] == "blob" and template.property_path(storage_params["serviceId"]) == [storage_symbol, "id"]
    assert (storage_params["subnetId"], storage_params["privateDnsZoneId"]) == ("privateEndpointSubnetId", "blobPrivateDnsZoneId")
    # The app's host needs its storage to start: the site waits for the endpoint.
    assert "storagePrivateEndpoint" in template.config("Microsoft.Web/sites")["dependsOn"]
    group = template.config("Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    assert group["properties"]["privateDnsZoneConfigs"][0]["properties"]["privateDnsZoneId"] == "privateDnsZoneId"


def test_a_created_vault_is_locked_against_deletion_by_default():
    file, _, lock = template.the_resource("Microsoft.Authorization/locks")
    assert file == "key-vault.bicep"
    assert lock["config"]["condition"] == "deleteLock"
    assert lock["config"]["config"]["scope"] == "keyVault"
    assert lock["config"]["config"]["properties"]["level"] == "CanNotDelete"
    assert modules()["keyVault"]["config"]["config"]["params"]["deleteLock"] == "keyVaultDeleteLock"


@pytest.mark.parametrize("protection, sku", [("software", "standard"), ("hsm", "premium")])
def test_hsm_key_protection_makes_a_created_vault_premium(protection, sku):
    assert main_parameter("keyProtection")["decorators"][0] == {"type": "allowed", "argument": ["software", "hsm"]}
    chosen = modules()["keyVault"]["config"]["config"]["params"]["skuName"]
    assert template.evaluate(chosen, "main.bicep", {"keyProtection": protection}) == sku
    assert template.config("Microsoft.KeyVault/vaults")["properties"]["sku"]["name"] == "skuName"


@pytest.mark.parametrize("protection, hsm_keys", [("software", False), ("hsm", True)])
def test_key_protection_tells_the_app_which_keys_to_create(protection, hsm_keys):
    assert app_parameter("keyProtection") == "keyProtection"
    setting = template.evaluate(template.app_settings()["KEY_VAULT_KEY_PROTECTION"], "app.bicep", {"keyProtection": protection})
    app_settings = {"TRUST_DOMAIN": "example.org", "KEY_VAULT_URI": "https://kv.vault.azure.net/", "KEY_IDENTIFIER_VALUE": "id"}
    assert load_settings({**app_settings, "KEY_VAULT_KEY_PROTECTION": setting}).hsm_keys is hsm_keys


def test_the_id_blobs_keep_former_versions_and_deleted_blobs_for_a_while():
    blob_service = template.config("Microsoft.Storage/storageAccounts/blobServices")["properties"]
    assert blob_service["isVersioningEnabled"] is True
    assert blob_service["deleteRetentionPolicy"] == {"enabled": True, "days": 7}
    rule = template.config("Microsoft.Storage/storageAccounts/managementPolicies")["properties"]["policy"]["rules"][0]
    assert rule["definition"]["actions"] == {"version": {"delete": {"daysAfterCreationGreaterThan": 7}}}
    # The id blobs live in that account: the blob service's settings are theirs.
    storage_symbol = template.the_resource("Microsoft.Storage/storageAccounts")[1]
    assert template.property_path(template.app_settings()["KEY_METADATA_STORAGE__blobServiceUri"])[0] == storage_symbol


def test_storage_redundancy_is_a_parameter():
    assert template.config("Microsoft.Storage/storageAccounts")["sku"] == {"name": "storageSkuName"}
    allowed = main_parameter("storageSkuName")["decorators"][0]
    assert allowed == {"type": "allowed", "argument": ["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS"]}
    assert app_parameter("storageSkuName") == "storageSkuName"


@pytest.mark.parametrize("count, always_ready", [(1, [{"name": "http", "instanceCount": 1}]), (0, [])])
def test_always_ready_instances_serve_the_http_functions(count, always_ready):
    scale = template.config("Microsoft.Web/sites")["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert template.evaluate(scale["alwaysReady"], "app.bicep", {"alwaysReadyInstanceCount": count}) == always_ready
    assert app_parameter("alwaysReadyInstanceCount") == "alwaysReadyInstanceCount"


def test_each_instance_takes_as_many_http_requests_as_the_worker_has_threads():
    scale = template.config("Microsoft.Web/sites")["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["triggers"] == {"http": {"perInstanceConcurrency": "httpPerInstanceConcurrency"}}
    threads = template.app_settings()["PYTHON_THREADPOOL_THREAD_COUNT"]
    assert template.evaluate(threads, "app.bicep", {"httpPerInstanceConcurrency": 16}) == "16"
    assert app_parameter("httpPerInstanceConcurrency") == "httpPerInstanceConcurrency"


def trigger_decorators() -> set[str]:
    """The blueprint (`bp`) decorators the app's functions use: route, timer_trigger, function_name..."""
    names = set()
    for path in sorted(template.ROOT.glob("functions/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                names |= {
                    d.func.attr for d in node.decorator_list
                    if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and getattr(d.func.value, "id", None) == "bp"
                }
    return names


def test_no_extension_bundle_is_fetched_while_http_and_timer_triggers_are_all_the_app_uses():
    """Both triggers are built into the Functions host; any other needs the bundle back."""
    assert trigger_decorators() - {"function_name"} == {"route", "timer_trigger"}
    assert "extensionBundle" not in json.loads((template.ROOT / "host.json").read_text())
