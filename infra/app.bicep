// The function app on the Flex Consumption plan, its storage and its monitoring; identity-based
// connections only: the storage account refuses shared keys and Application Insights local auth.
param location string
param tags object
param resourceToken string

// The app's user-assigned identity.
param identityId string
param identityClientId string
param identityPrincipalId string

param trustDomain string
param keyVaultUri string

// Callers (README, Security): who may call, proven by Entra ID tokens for the API application.
@minLength(36)
@maxLength(36)
@description('Client id of the API application: a GUID, given or created (main.bicep)')
param apiClientId string
param spireServerIdentities object
param maintenanceIdentities array

// The network gate beside the tokens; both empty: no network restriction.
param allowedInboundIpRanges array
param allowedSubnetIds array

param keyIdentifierValue string
param staleKeyAge string
param sweepMaxDeletions string
param keyVaultRetrySeconds string
// software or hsm: the key types the app creates (hsm: RSA-HSM and EC-HSM, which need a Premium vault).
param keyProtection string
param refreshKeysSchedule string
param sweepKeysSchedule string

param maximumInstanceCount int
param instanceMemoryMB int
param alwaysReadyInstanceCount int
param httpPerInstanceConcurrency int

param storageSkuName string
param logRetentionDays int

// Private networking (main.bicep's privateNetworking): the app's outbound traffic goes through
// appSubnetId, and storage takes traffic only from its private endpoint in privateEndpointSubnetId.
param privateNetworking bool
param appSubnetId string
param privateEndpointSubnetId string
param blobPrivateDnsZoneId string

// Built-in roles (their ids are the same in every tenant).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// This cloud's Entra ID authority, such as https://login.microsoftonline.com (the environment gives it
// with a trailing slash).
var loginEndpoint = environment().authentication.loginEndpoint
var entraAuthorityHost = endsWith(loginEndpoint, '/') ? substring(loginEndpoint, 0, length(loginEndpoint) - 1) : loginEndpoint

var ipAddressRules = [for (ipRange, index) in allowedInboundIpRanges: {
  name: 'spire-ip-${index}'
  action: 'Allow'
  priority: 100 + index
  ipAddress: ipRange
}]
var subnetRules = [for (subnetId, index) in allowedSubnetIds: {
  name: 'spire-subnet-${index}'
  action: 'Allow'
  priority: 100 + length(allowedInboundIpRanges) + index
  vnetSubnetResourceId: subnetId
}]
var inboundRules = concat(ipAddressRules, subnetRules)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:checkov cannot evaluate the conditional; by default (privateNetworking) the firewall denies all and the app comes through the private endpoint (tests/infra asserts both values)
  // checkov:skip=CKV_AZURE_59:checkov cannot evaluate the conditional; by default (privateNetworking) public network access is off (tests/infra asserts both values)
  // checkov:skip=CKV_AZURE_206:checkov cannot evaluate the parameter; its default is geo-redundant (Standard_GRS), and the locally or zone-redundant choices are the operator's: what the account holds can be rebuilt
  // checkov:skip=CKV_AZURE_43:the name is st followed by uniqueString (13 lowercase letters and digits), within the rules; checkov cannot evaluate the expression
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSkuName
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

module storagePrivateEndpoint 'private-endpoint.bicep' = if (privateNetworking) {
  name: 'storage-private-endpoint'
  params: {
    name: 'pe-blob-${resourceToken}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    serviceId: storage.id
    groupId: 'blob'
    privateDnsZoneId: blobPrivateDnsZoneId
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // Every overwrite of a blob (the server id blobs, the host's) keeps the former content as a version,
    // and a deleted blob stays recoverable for 7 days: a mistaken write or delete of an id blob is undone.
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// The host and the id blobs' use records write often: former versions go after 7 days.
resource formerVersionsExpire 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'former-versions-expire'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 7
                }
              }
            }
          }
        }
      ]
    }
  }
}

// Where the Flex Consumption plan keeps the deployed package.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'app-package'
  properties: {
    publicAccess: 'None'
  }
}

// Where the server id blob lives (KEY_METADATA_BLOB).
resource metadataContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'spire'
  properties: {
    publicAccess: 'None'
  }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    // Also how long Key Vault's audit events (key-vault-diagnostics.bicep) are kept.
    retentionInDays: logRetentionDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:zone redundancy is offered in some regions only and needs zone-redundant storage; an operator who needs it turns it on for a region that has it
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:SPIRE servers prove themselves with Entra ID access tokens that the app verifies itself (README, Security); client certificates would need a PKI for them
  // checkov:skip=CKV_AZURE_222:SPIRE servers call the API over its public endpoint, limited to their networks when allowedInboundIpRanges or allowedSubnetIds name them; every key route needs an Entra ID token
  // checkov:skip=CKV_AZURE_212:the check reads numberOfWorkers, which Flex Consumption does not use; the plan keeps alwaysReadyInstanceCount instances (1 by default) and scales out on demand up to maximumInstanceCount
  // checkov:skip=CKV_AZURE_213:/api/health reports Key Vault and storage outages, which recycling instances does not fix, so it is not the platform's health check
  name: 'func-${resourceToken}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    virtualNetworkSubnetId: privateNetworking ? appSubnetId : null
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Only the SPIRE servers' networks, when any is named; else every address (the tokens remain the gate).
      ipSecurityRestrictions: inboundRules
      ipSecurityRestrictionsDefaultAction: empty(inboundRules) ? 'Allow' : 'Deny'
      // Deployments come from the operator's machine or CI, not from the SPIRE servers' networks; the SCM
      // site takes Entra ID alone (basic publishing credentials are off, below) and Azure RBAC decides.
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictionsDefaultAction: 'Allow'
      // Every setting the app reads that has a value in Azure (README, Configuration); none holds a
      // secret. An empty value means the app's default.
      appSettings: [
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: 'TRUST_DOMAIN'
          value: trustDomain
        }
        {
          name: 'KEY_VAULT_URI'
          value: keyVaultUri
        }
        {
          name: 'USE_MSI'
          value: 'true'
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'ENTRA_TENANT_ID'
          value: tenant().tenantId
        }
        {
          name: 'ENTRA_API_CLIENT_ID'
          value: apiClientId
        }
        {
          // The API application asks for v2 tokens (api.requestedAccessTokenVersion = 2).
          name: 'ENTRA_TOKEN_VERSION'
          value: '2'
        }
        {
          name: 'ENTRA_AUTHORITY_HOST'
          value: entraAuthorityHost
        }
        {
          name: 'SPIRE_SERVER_IDENTITIES'
          value: string(spireServerIdentities)
        }
        {
          name: 'MAINTENANCE_IDENTITIES'
          value: join(maintenanceIdentities, ',')
        }
        {
          name: 'KEY_METADATA_BLOB'
          value: '${metadataContainer.name}/key-metadata'
        }
        {
          name: 'KEY_METADATA_STORAGE__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'KEY_IDENTIFIER_VALUE'
          value: keyIdentifierValue
        }
        {
          name: 'STALE_KEY_AGE'
          value: staleKeyAge
        }
        {
          name: 'SWEEP_MAX_DELETIONS'
          value: sweepMaxDeletions
        }
        {
          name: 'KEY_VAULT_RETRY_SECONDS'
          value: keyVaultRetrySeconds
        }
        {
          name: 'KEY_VAULT_KEY_PROTECTION'
          value: keyProtection
        }
        {
          name: 'REFRESH_KEYS_SCHEDULE'
          value: refreshKeysSchedule
        }
        {
          name: 'SWEEP_KEYS_SCHEDULE'
          value: sweepKeysSchedule
        }
        {
          // The key functions are synchronous and spend their time waiting on Key Vault: each request
          // an instance takes at once holds a worker thread, so there are as many threads as requests.
          name: 'PYTHON_THREADPOOL_THREAD_COUNT'
          value: string(httpPerInstanceConcurrency)
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Kept started for the HTTP functions, so that a SPIRE server's call does not wait for a cold start.
        alwaysReady: (alwaysReadyInstanceCount == 0) ? [] : [
          {
            name: 'http'
            instanceCount: alwaysReadyInstanceCount
          }
        ]
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
  dependsOn: [
    storageBlobDataOwnerAssignment
    storagePrivateEndpoint
  ]
}

// Deployments and the Kudu site authenticate with Entra ID only: no FTP, no basic publishing credentials.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// The Functions host keeps its keys, locks and timer schedules in containers it creates itself, and
// the plan reads the deployed package with the same identity: Microsoft documents Storage Blob Data
// Owner on the account for that. The account is this app's alone, and the server id blob's container
// is in it, so this one assignment is also the metadata blob's.
resource storageBlobDataOwnerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry with Entra ID authentication (local auth is off).
resource monitoringMetricsPublisherAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = functionApp.name
output appInsightsId string = appInsights.id
output logAnalyticsWorkspaceId string = logAnalytics.id
output defaultHostName string = functionApp.properties.defaultHostName
