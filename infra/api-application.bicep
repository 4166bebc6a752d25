// The app's API application in Microsoft Entra ID, when the deployment creates it (createApiApplication):
// the audience of the callers' tokens. Single tenant, v2 access tokens, api://<appId>, no credential of
// its own (the app only verifies tokens), and an app role without which Entra issues no token for it.
// Deploying it needs Microsoft Graph permissions: creating applications and assigning app roles.
extension microsoftGraphV1

@description('Alternate key of the application, unique in the tenant; immutable')
param uniqueName string

param displayName string

@description('Who may act as which SPIRE server (SPIRE_SERVER_IDENTITIES): each object id gets the caller role')
param spireServerIdentities object

@description('Object ids that may run maintenance (MAINTENANCE_IDENTITIES): each gets the caller role')
param maintenanceIdentities array

// Graph compares object ids without regard to case; one assignment per identity.
var callerObjectIds = union(map(objectKeys(spireServerIdentities), objectId => toLower(objectId)), map(maintenanceIdentities, objectId => toLower(objectId)))
var signInAudience = 'AzureADMyOrg'
var api = {
  requestedAccessTokenVersion: 2
}
var callerRole = {
  id: guid(uniqueName, 'KeyManager.Caller')
  value: 'KeyManager.Caller'
  displayName: 'KeyManager.Caller'
  description: 'Call the SPIRE key manager API; the app then authorizes the caller\'s object id itself'
  allowedMemberTypes: [
    'Application'
  ]
  isEnabled: true
}

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: signInAudience
  api: api
  appRoles: [
    callerRole
  ]
}

// identifierUris holds the appId, which Entra assigns when it creates the application: this second
// declaration of the same application (same uniqueName) adds api://<appId> once the appId is known.
resource applicationIdentifierUri 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: signInAudience
  api: api
  appRoles: [
    callerRole
  ]
  identifierUris: [
    'api://${application.appId}'
  ]
}

// With appRoleAssignmentRequired, Entra refuses a token for this API to any principal that holds no
// assignment of the caller role: a gate before the app's own authorization list.
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: applicationIdentifierUri.appId
  appRoleAssignmentRequired: true
}

resource callerAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for callerObjectId in callerObjectIds: {
  principalId: callerObjectId
  resourceId: servicePrincipal.id
  appRoleId: callerRole.id
}]

output appId string = application.appId
