// azd up: the key manager API on Azure Functions (Flex Consumption), with its own storage, monitoring,
// identity and Key Vault role; the vault is created unless an existing one is named.
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

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, in MB')
param instanceMemoryMB int = 2048

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var createKeyVault = empty(keyVaultName)
var vaultName = createKeyVault ? 'kv-${resourceToken}' : keyVaultName
var vaultResourceGroupName = empty(keyVaultResourceGroupName) ? rg.name : keyVaultResourceGroupName
// A name of its own per environment, so that a second environment in the tenant deploys too.
var roleName = empty(keyManagerRoleName) ? 'SPIRE Key Manager (${resourceToken})' : keyManagerRoleName

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
    keyIdentifierValue: keyIdentifierValue
    staleKeyAge: staleKeyAge
    sweepMaxDeletions: sweepMaxDeletions
    keyVaultRetrySeconds: keyVaultRetrySeconds
    refreshKeysSchedule: refreshKeysSchedule
    sweepKeysSchedule: sweepKeysSchedule
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output KEY_VAULT_URI string = keyManagerRole.outputs.keyVaultUri
@description('The app\'s URL: the SPIRE plugin\'s app_url (the API is under /api)')
output APP_URL string = 'https://${app.outputs.defaultHostName}'
@description('The command that prints the default host key, the key the SPIRE plugin sends; the key itself is never a deployment output')
output HOST_KEY_COMMAND string = 'az functionapp keys list --resource-group ${rg.name} --name ${app.outputs.name} --query functionKeys.default --output tsv'
