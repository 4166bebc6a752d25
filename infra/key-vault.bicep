// A new Key Vault for the keys, when the operator names no existing one.
param name string
param location string
param tags object

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:the Flex Consumption app reaches the vault from no fixed address or network unless it is put in a virtual network; access is by Azure RBAC only
  // checkov:skip=CKV_AZURE_189:as above: without a virtual network and a private endpoint the app reaches the vault over its public endpoint
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = keyVault.name
