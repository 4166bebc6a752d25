// A new Key Vault for the keys, when the operator names no existing one.
param name string
param location string
param tags object

@allowed([
  'standard'
  'premium'
])
@description('premium: keys may be HSM-protected (RSA-HSM, EC-HSM); standard: software-protected only')
param skuName string

@description('Reachable only through the private endpoint (main.bicep creates it): public network access off')
param privateNetworking bool

@description('A CanNotDelete lock: deleting the vault (or its resource group) fails until the lock is removed')
param deleteLock bool

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:checkov cannot evaluate the conditional; by default (privateNetworking) the firewall denies all and the app comes through the private endpoint (tests/infra asserts both values)
  // checkov:skip=CKV_AZURE_189:checkov cannot evaluate the conditional; by default (privateNetworking) public network access is off (tests/infra asserts both values)
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: skuName
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Purge protection keeps deleted keys recoverable; the lock keeps the vault itself, whose loss would
// take every SPIRE server's CA keys at once, from a mistaken delete of it or of its resource group.
resource deleteLockOnVault 'Microsoft.Authorization/locks@2020-05-01' = if (deleteLock) {
  name: 'spire-keys-do-not-delete'
  scope: keyVault
  properties: {
    level: 'CanNotDelete'
    notes: 'Holds the SPIRE servers\' CA keys; remove this lock deliberately before deleting the vault'
  }
}

output name string = keyVault.name
