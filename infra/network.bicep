// The virtual network of private networking (main.bicep's privateNetworking): one subnet for the
// function app's outbound traffic (Flex Consumption's virtual network integration), one for the
// private endpoints of Key Vault and storage, and the private DNS zones that resolve their names to
// those endpoints inside the network. Inbound calls from SPIRE servers still reach the app's public
// endpoint, gated by tokens and allowedInboundIpRanges / allowedSubnetIds.
param name string
param location string
param tags object

@description('Address space of the network')
param addressPrefix string

@description('Address range of the app\'s subnet, within addressPrefix; Flex Consumption takes an address per instance')
param appSubnetPrefix string

@description('Address range of the private endpoints\' subnet, within addressPrefix')
param privateEndpointSubnetPrefix string

// The private link zones of Key Vault (Azure public cloud's name) and Blob storage, in this order.
var privateDnsZoneNames = [
  'privatelink.vaultcore.azure.net'
  'privatelink.blob.${environment().suffixes.storage}'
]

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          // All the app's outbound traffic leaves through this subnet, Entra ID's and Application Insights'
          // included; new subnets are private by default, so the internet access is asked for (a NAT
          // gateway added to the subnet gives it a fixed address instead).
          defaultOutboundAccess: true
          // Flex Consumption integrates with a subnet delegated to Microsoft.App/environments.
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          defaultOutboundAccess: false
        }
      }
    ]
  }
}

resource privateDnsZones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for zoneName in privateDnsZoneNames: {
  name: zoneName
  location: 'global'
  tags: tags
}]

resource privateDnsZoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (zoneName, index) in privateDnsZoneNames: {
  parent: privateDnsZones[index]
  name: virtualNetwork.name
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: virtualNetwork.id
    }
  }
}]

output appSubnetId string = virtualNetwork.properties.subnets[0].id
output privateEndpointSubnetId string = virtualNetwork.properties.subnets[1].id
output vaultDnsZoneId string = privateDnsZones[0].id
output blobDnsZoneId string = privateDnsZones[1].id
