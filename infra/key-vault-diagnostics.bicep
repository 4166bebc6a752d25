// Key Vault's audit log (every data-plane call: who, which key, which operation, the result) sent to
// the app's Log Analytics workspace, for a created or an existing vault. Deployed in the vault's
// resource group; it adds a setting beside any the vault already has.
param keyVaultName string
param workspaceId string

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource auditToWorkspace 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'spire-key-manager-audit'
  scope: keyVault
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}
