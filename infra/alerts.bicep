// Alerts that wake someone: log search alerts over what the app records in Application Insights today
// (the Functions host's requests table and the app's log lines in traces, which host.json keeps out of
// sampling), and a metric alert on Key Vault's own count of throttled calls. They are created with or
// without an action group; without one they show in the portal's alert list only.
param location string
param tags object
param resourceToken string
param appInsightsId string
param keyVaultId string

@description('Resource id of an existing action group to notify; empty: none')
param actionGroupId string

var actionGroupIds = empty(actionGroupId) ? [] : [
  actionGroupId
]

// Each query counts rows that should not exist; any row in the window fires the alert. The texts are
// the app's own log messages (functions/, shared/); tests/infra checks them against the code.
var logAlerts = [
  {
    name: 'failed-signs'
    severity: 1
    description: 'A SPIRE server\'s sign failed (any answer but 2xx, but for a caller refused with 401 or 403, which anyone can cause): it could not mint or rotate with its CA key.'
    query: 'requests | where name == "sign_data" and not(resultCode startswith "2") and resultCode !in ("401", "403") | project timestamp, resultCode, cloud_RoleInstance, operation_Id'
  }
  {
    name: 'server-errors'
    severity: 1
    description: 'The app answered 5xx: Key Vault or storage unreachable, a stopped server, or a bug.'
    query: 'requests | where toint(resultCode) >= 500 | project timestamp, name, resultCode, cloud_RoleInstance, operation_Id'
  }
  {
    name: 'stopped-server'
    severity: 1
    description: 'A SPIRE server is stopped: its id blob holds another server id, or two plugin processes call under one server name.'
    query: 'traces | where severityLevel >= 3 and (message startswith "Stopping: " or message contains "two SPIRE server processes call as server") | project timestamp, message, cloud_RoleInstance, operation_Id'
  }
  {
    name: 'maintenance-failed'
    severity: 2
    description: 'A key refresh or sweep failed or missed servers, or its schedule is invalid: keys age towards the stale age.'
    query: 'union (requests | where name in ("refresh_keys", "sweep_stale_keys") and success == false), (traces | where severityLevel >= 3 and (message startswith "Key refresh missed servers" or message startswith "Key maintenance: ")) | project timestamp, name, message, cloud_RoleInstance, operation_Id'
  }
]

resource logSearchAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in logAlerts: {
  name: 'alert-${alert.name}-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'SPIRE key manager: ${alert.name}'
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}]

// Key Vault counts its 429s itself, including those the app's retries later got past.
resource keyVaultThrottling 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-key-vault-throttling-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Key Vault throttled the app (HTTP 429): signs and generates slow down, then fail with ResourceExhausted.'
    severity: 2
    enabled: true
    scopes: [
      keyVaultId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'throttled-calls'
          metricNamespace: 'Microsoft.KeyVault/vaults'
          metricName: 'ServiceApiResult'
          dimensions: [
            {
              name: 'StatusCode'
              operator: 'Include'
              values: [
                '429'
              ]
            }
          ]
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    autoMitigate: true
    actions: [for id in actionGroupIds: {
      actionGroupId: id
    }]
  }
}
