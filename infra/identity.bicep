// The app's identity: user-assigned, so that it exists before the app and its roles are in place
// when the app first starts, and so that it outlives a re-created app without new role assignments.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
