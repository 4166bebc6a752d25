// azd up: the key manager API on Azure Functions (Flex Consumption), with its own storage, monitoring,
// identity and Key Vault role; the vault is created unless an existing one is named, and the API
// application in Entra ID (the audience of the callers' tokens) is created when createApiApplication.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and seeds the other names')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer the Flex Consumption plan')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@minLength(1)
@description('SPIFFE trust domain of the SPIRE servers that use this app, such as example.org')
param trustDomain string

@description('Name of an existing Key Vault to keep the keys in; empty: the template creates one')
param keyVaultName string = ''

@description('Resource group of that existing Key Vault; empty: the app\'s resource group')
param keyVaultResourceGroupName string = ''

@description('Name of the custom role (role names are unique in a tenant); empty: "SPIRE Key Manager (<resource token>)", one per environment')
param keyManagerRoleName string = ''

@description('Create the API application in Entra ID (needs Microsoft Graph permissions to create applications and assign app roles); false: apiClientId names an existing one')
param createApiApplication bool = false

@description('Client id of the app\'s API application in Entra ID (ENTRA_API_CLIENT_ID, the audience of v2 tokens); required unless createApiApplication')
param apiClientId string = ''

@description('SPIRE_SERVER_IDENTITIES: each caller\'s object id to the SPIRE server names it may act as, such as {"<object id>": ["spire-a", "spire-b"]}; "" names the default server')
param spireServerIdentities object

@description('MAINTENANCE_IDENTITIES: object ids that may run maintenance on demand; empty: none (the timers need none)')
param maintenanceIdentities array = []

@description('CIDR ranges that may reach the app, such as the SPIRE servers\' egress addresses. With allowedSubnetIds also empty: no network restriction; the tokens remain the gate')
param allowedInboundIpRanges array = []

@description('Resource ids of virtual network subnets (with the Microsoft.Web service endpoint) that may reach the app. With allowedInboundIpRanges also empty: no network restriction; the tokens remain the gate')
param allowedSubnetIds array = []

@description('A fixed server id instead of the server id blob (KEY_IDENTIFIER_VALUE); empty: the blob')
param keyIdentifierValue string = ''

@description('STALE_KEY_AGE; empty: the app\'s default')
param staleKeyAge string = ''

@description('SWEEP_MAX_DELETIONS; empty: the app\'s default')
param sweepMaxDeletions string = ''

@description('KEY_VAULT_RETRY_SECONDS; empty: the app\'s default')
param keyVaultRetrySeconds string = ''

@description('REFRESH_KEYS_SCHEDULE (NCRONTAB); empty: the app\'s default')
param refreshKeysSchedule string = ''

@description('SWEEP_KEYS_SCHEDULE (NCRONTAB); empty: the app\'s default')
param sweepKeysSchedule string = ''

@description('Most instances the plan may run at once')
param maximumInstanceCount int = 40

@minValue(0)
@description('Instances kept started for the HTTP functions, so that no SPIRE server call waits for a cold start; each bills its memory while idle (README, Deployment). 0: scale from zero')
param alwaysReadyInstanceCount int = 1

@minValue(1)
@maxValue(1000)
@description('HTTP requests each instance takes at once (Flex Consumption\'s default for Python is 1), and as many Python worker threads (PYTHON_THREADPOOL_THREAD_COUNT)')
param httpPerInstanceConcurrency int = 16

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, in MB')
param instanceMemoryMB int = 2048

@description('Reach Key Vault and storage through private endpoints in a virtual network of the template\'s, with their public network access off (an existing vault\'s is left as it is), and the app\'s outbound traffic through that network')
param privateNetworking bool = true

@description('Address space of that virtual network (privateNetworking)')
param virtualNetworkAddressPrefix string = '10.70.0.0/16'

@description('Its subnet for the app\'s outbound traffic, delegated to Flex Consumption')
param appSubnetAddressPrefix string = '10.70.0.0/24'

@description('Its subnet for the private endpoints of Key Vault and storage')
param privateEndpointSubnetAddressPrefix string = '10.70.1.0/24'

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Redundancy of the app\'s storage account (the server id blobs, the deployed package, the host\'s state)')
param storageSkuName string = 'Standard_GRS'

@allowed([
  'software'
  'hsm'
])
@description('Protection of the keys (KEY_VAULT_KEY_PROTECTION): hsm makes the app create HSM-protected keys (RSA-HSM, EC-HSM) and a created vault Premium; a vault named by keyVaultName must then be Premium. Managed HSM is not supported (README, Deployment)')
param keyProtection string = 'software'

@description('A CanNotDelete lock on a created vault: deleting it, or its resource group (azd down), fails until the lock is removed')
param keyVaultDeleteLock bool = true

@minValue(30)
@maxValue(730)
@description('Days the Log Analytics workspace keeps the app\'s telemetry and Key Vault\'s audit events')
param logRetentionDays int = 90

@description('Resource id of an existing action group that the alerts notify; empty: the alerts are created and show in the portal, notifying no one')
param alertActionGroupId string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var createKeyVault = empty(keyVaultName)
var vaultName = createKeyVault ? 'kv-${resourceToken}' : keyVaultName
var vaultResourceGroupName = empty(keyVaultResourceGroupName) ? rg.name : keyVaultResourceGroupName
// A name of its own per environment, so that a second environment in the tenant deploys too.
var roleName = empty(keyManagerRoleName) ? 'SPIRE Key Manager (${resourceToken})' : keyManagerRoleName
var entraApiClientId = createApiApplication ? apiApplication.outputs.appId : apiClientId

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module keyVault 'key-vault.bicep' = if (createKeyVault) {
  name: 'key-vault'
  scope: rg
  params: {
    name: vaultName
    location: location
    tags: tags
    skuName: (keyProtection == 'hsm') ? 'premium' : 'standard'
    privateNetworking: privateNetworking
    deleteLock: keyVaultDeleteLock
  }
}

module network 'network.bicep' = if (privateNetworking) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
    addressPrefix: virtualNetworkAddressPrefix
    appSubnetPrefix: appSubnetAddressPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetAddressPrefix
  }
}

// The vault's private endpoint, created or existing: the app resolves the vault's name to it.
module keyVaultPrivateEndpoint 'private-endpoint.bicep' = if (privateNetworking) {
  name: 'key-vault-private-endpoint'
  scope: rg
  params: {
    name: 'pe-vault-${resourceToken}'
    location: location
    tags: tags
    subnetId: privateNetworking ? network.outputs.privateEndpointSubnetId : ''
    serviceId: keyManagerRole.outputs.keyVaultId
    groupId: 'vault'
    privateDnsZoneId: privateNetworking ? network.outputs.vaultDnsZoneId : ''
  }
}

module keyVaultDiagnostics 'key-vault-diagnostics.bicep' = {
  name: 'key-vault-diagnostics'
  scope: resourceGroup(vaultResourceGroupName)
  params: {
    keyVaultName: vaultName
    workspaceId: app.outputs.logAnalyticsWorkspaceId
  }
  dependsOn: [
    keyVault
  ]
}

module alerts 'alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    appInsightsId: app.outputs.appInsightsId
    keyVaultId: keyManagerRole.outputs.keyVaultId
    actionGroupId: alertActionGroupId
  }
}

module keyManagerRole 'key-manager-role.bicep' = {
  name: 'key-manager-role'
  scope: resourceGroup(vaultResourceGroupName)
  params: {
    keyVaultName: vaultName
    principalId: identity.outputs.principalId
    roleName: roleName
  }
  dependsOn: [
    keyVault
  ]
}

// The Graph extension's resources live in a module of their own: the other files stay plain ARM.
module apiApplication 'api-application.bicep' = if (createApiApplication) {
  name: 'api-application'
  scope: rg
  params: {
    uniqueName: 'spire-key-manager-api-${resourceToken}'
    displayName: 'SPIRE Key Manager API (${environmentName})'
    spireServerIdentities: spireServerIdentities
    maintenanceIdentities: maintenanceIdentities
  }
}

module app 'app.bicep' = {
  name: 'app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    identityPrincipalId: identity.outputs.principalId
    trustDomain: trustDomain
    keyVaultUri: keyManagerRole.outputs.keyVaultUri
    apiClientId: entraApiClientId
    spireServerIdentities: spireServerIdentities
    maintenanceIdentities: maintenanceIdentities
    allowedInboundIpRanges: allowedInboundIpRanges
    allowedSubnetIds: allowedSubnetIds
    keyIdentifierValue: keyIdentifierValue
    staleKeyAge: staleKeyAge
    sweepMaxDeletions: sweepMaxDeletions
    keyVaultRetrySeconds: keyVaultRetrySeconds
    keyProtection: keyProtection
    refreshKeysSchedule: refreshKeysSchedule
    sweepKeysSchedule: sweepKeysSchedule
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    storageSkuName: storageSkuName
    logRetentionDays: logRetentionDays
    privateNetworking: privateNetworking
    appSubnetId: privateNetworking ? network.outputs.appSubnetId : ''
    privateEndpointSubnetId: privateNetworking ? network.outputs.privateEndpointSubnetId : ''
    blobPrivateDnsZoneId: privateNetworking ? network.outputs.blobDnsZoneId : ''
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output KEY_VAULT_URI string = keyManagerRole.outputs.keyVaultUri
@description('The app\'s URL: the SPIRE plugin\'s app_url (the API is under /api)')
output APP_URL string = 'https://${app.outputs.defaultHostName}'
@description('Client id of the app\'s API application: the SPIRE plugin\'s api_client_id')
output API_CLIENT_ID string = entraApiClientId
@description('The tenant whose tokens the app accepts: the SPIRE plugin\'s tenant_id where its credential takes one')
output TENANT_ID string = tenant().tenantId
