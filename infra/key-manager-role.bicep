// The custom role (main.bicep names it) and its one assignment: the app's identity, on the vault only.
// Deployed in the vault's resource group, which may be another than the app's (an existing vault).
@description('Name of the Key Vault that holds the keys')
param keyVaultName string

@description('Principal id of the app\'s managed identity')
param principalId string

@description('Name of the custom role; role names are unique in a tenant')
param roleName string

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Exactly the key operations the app performs (README, "Key Vault permissions"): no import, export,
// backup, purge, encryption or wrapping, and nothing on secrets or certificates.
resource keyManagerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, roleName)
  properties: {
    roleName: roleName
    description: 'Create, list, rotate, refresh, delete, recover and sign with keys; no export, no purge.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/keys/read'
          'Microsoft.KeyVault/vaults/keys/create/action'
          'Microsoft.KeyVault/vaults/keys/update/action'
          'Microsoft.KeyVault/vaults/keys/delete'
          'Microsoft.KeyVault/vaults/keys/recover/action'
          'Microsoft.KeyVault/vaults/keys/sign/action'
        ]
        notDataActions: []
      }
    ]
    // Microsoft advises against resource-level assignable scopes; the assignment below is the vault's.
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource keyManagerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, principalId, keyManagerRole.id)
  scope: keyVault
  properties: {
    roleDefinitionId: keyManagerRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output keyVaultUri string = keyVault.properties.vaultUri
output keyVaultId string = keyVault.id
