// The DPS custom-allocation webhook in Azure: a Python 3.11 Function App on Linux, its storage
// account (the Tables live there), Application Insights, one or more IoT hubs and a DPS instance
// with the hubs linked.
//
// Deploy (docs/deploy.md):
//   az group create -n <rg> -l <region>
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.parameters.json
// then publish the code and wire the enrollment with scripts/deploy.
//
// Secrets: nothing secret is a parameter or an output. Connection strings are built here with
// listKeys() and written only to Key Vault; the app settings that need them are Key Vault
// references resolved with a user-assigned identity (created, and given its roles, before the
// app, so the references resolve on first start). The Flex Consumption deployment container
// is reached with the same identity, not a key. The app's Table store (store/settings.py) takes
// AzureWebJobsStorage as a connection string, which is why that one is a Key Vault reference
// rather than an identity-based connection.
//
// Resource shapes: Flex Consumption `functionAppConfig` as in Microsoft's Flex samples
// (Azure-Samples/functions-quickstart-*); DPS hub linking with a hub connection string from
// listKeys on Microsoft.Devices/IotHubs/IotHubKeys/<policy> (REST "Iot Hub Resource - Get Keys
// For Key Name": POST .../IotHubKeys/{keyName}/listkeys, returns one rule with `primaryKey`),
// the shape of Azure/azure-quickstart-templates `iothub-device-provisioning`.

@description('Short prefix for resource names: lowercase letters and digits, starting with a letter.')
@minLength(3)
@maxLength(11)
param namePrefix string

@description('Region for every resource.')
param location string = resourceGroup().location

@description('IoT hub names (not host names). Each becomes <name>.azure-devices.net and is linked to DPS.')
@minLength(1)
param hubNames array

@description('IoT hub SKU. F1 (free) allows one hub per subscription; S1 is the usual choice.')
@allowed([
  'F1'
  'B1'
  'S1'
  'S2'
])
param hubSku string = 'S1'

// minTlsVersion '1.2' (TLS 1.2 enforcement) is accepted only at hub creation and only in a few
// regions (East US, South Central US, West US 2, US Gov Arizona, US Gov Virginia: "TLS 1.2
// enforcement available in select regions", learn.microsoft.com/azure/iot-hub/iot-hub-tls-support);
// elsewhere (westeurope, the region docs/deploy.md uses) it fails the hub deployment. It cannot be
// changed after creation, so it is opt-in.
@description('Create the hubs with TLS 1.2 enforcement (minTlsVersion 1.2). Only in East US, South Central US, West US 2 and US Gov regions.')
param hubEnforceTls12 bool = false

@description('DNS suffix of IoT hub host names (azure-devices.net in Azure public cloud).')
param iotHubDomain string = 'azure-devices.net'

// DPS names are global (<name>.azure-devices-provisioning.net), like hub and app names, so the
// default carries the same resource-group hash as the app name; '<prefix>-dps' alone would
// collide for everyone who keeps the sample prefix.
@description('DPS instance name (globally unique: it is the <name>.azure-devices-provisioning.net service endpoint).')
param dpsName string = '${namePrefix}-dps-${uniqueString(resourceGroup().id)}'

@description('Function App name (globally unique: it is the <name>.azurewebsites.net host).')
param functionAppName string = '${namePrefix}-alloc-${uniqueString(resourceGroup().id)}'

@description('FlexConsumption (recommended) or Consumption (Linux Consumption, Y1; see docs/deploy.md).')
@allowed([
  'FlexConsumption'
  'Consumption'
])
param hostingPlan string = 'FlexConsumption'

@description('Flex Consumption: upper bound on instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption: memory per instance (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('ALLOCATION_POLICY_FILE: the policy file, relative to the app root (docs/settings.md).')
param allocationPolicyFile string = 'examples/tutorial-policy.toml'

@description('REGISTRY_TABLE_PREFIX (docs/settings.md).')
param registryTablePrefix string = 'dps'

@description('RETIRED_CHECK (docs/settings.md).')
@allowed([
  'fail-closed'
  'fail-open'
])
param retiredCheck string = 'fail-closed'

var suffix = uniqueString(resourceGroup().id, namePrefix)
var storageName = toLower(take('${namePrefix}st${suffix}', 24))
var vaultName = take('${namePrefix}-kv-${suffix}', 24)
var deploymentContainer = 'app-package'
var storageSecretName = 'storage-connection-string'
var replaySecretName = 'replay-signing-key'
var isFlex = hostingPlan == 'FlexConsumption'
// Built-in role definition ids (Azure RBAC built-in roles).
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

// --- monitoring -----------------------------------------------------------------------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs-${suffix}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-appi-${suffix}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
  }
}

// --- storage: host storage, the app's Tables, the Flex deployment package --------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: true // the Table store takes a connection string (kept in Key Vault)
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

// --- identity and Key Vault ---------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-id-${suffix}'
  location: location
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
  }
}

resource storageSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: storageSecretName
  properties: {
    value: 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  }
}

// REPLAY_SIGNING_KEY (docs/settings.md): stable across redeployments (a key that changed on every
// deployment would orphan the replay lines signed before it) and still no parameter: derived here
// from the storage account's second key with guid(), a one-way hash, so the signing key does not
// reveal the storage key. Rotating that storage key rotates this one: replay what is pending first.
resource replaySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: replaySecretName
  properties: {
    value: '${guid(storage.listKeys().keys[1].value, 'replay-signing-key', '1')}${guid(storage.listKeys().keys[1].value, 'replay-signing-key', '2')}'
  }
}

// One service connection string per hub, for retire/reinstate (registryReadWrite: enable/disable
// identities, nothing more).
resource hubSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for (hubName, i) in hubNames: {
    parent: vault
    name: 'hub-${hubName}'
    properties: {
      value: 'HostName=${hubs[i].properties.hostName};SharedAccessKeyName=registryReadWrite;SharedAccessKey=${listKeys(resourceId('Microsoft.Devices/IotHubs/IotHubKeys', hubName, 'registryReadWrite'), '2023-06-30').primaryKey}'
    }
  }
]

resource vaultReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// --- IoT hubs and DPS -----------------------------------------------------------------------------

resource hubs 'Microsoft.Devices/IotHubs@2023-06-30' = [
  for hubName in hubNames: {
    name: hubName
    location: location
    sku: {
      name: hubSku
      capacity: 1
    }
    properties: hubEnforceTls12 ? { minTlsVersion: '1.2' } : {}
  }
]

resource dps 'Microsoft.Devices/provisioningServices@2022-02-05' = {
  name: dpsName
  location: location
  sku: {
    name: 'S1'
    capacity: 1
  }
  properties: {
    // The instance-level default; each enrollment created by scripts/deploy sets `custom`.
    allocationPolicy: 'Hashed'
    iotHubs: [
      for (hubName, i) in hubNames: {
        connectionString: 'HostName=${hubs[i].properties.hostName};SharedAccessKeyName=iothubowner;SharedAccessKey=${listKeys(resourceId('Microsoft.Devices/IotHubs/IotHubKeys', hubName, 'iothubowner'), '2023-06-30').primaryKey}'
        location: location
      }
    ]
  }
}

// --- the Function App ------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${namePrefix}-plan-${suffix}'
  location: location
  kind: 'functionapp'
  sku: isFlex
    ? {
        name: 'FC1'
        tier: 'FlexConsumption'
      }
    : {
        name: 'Y1'
        tier: 'Dynamic'
      }
  properties: {
    reserved: true // Linux
  }
}

// Key Vault references by vault and secret name: no runtime value needed to build them.
var hubAppSettings = [
  for hubName in hubNames: {
    name: 'IOTHUB_CONNECTION_STRING__${toUpper(replace(replace('${hubName}.${iotHubDomain}', '-', '_'), '.', '_'))}'
    value: '@Microsoft.KeyVault(VaultName=${vaultName};SecretName=hub-${hubName})'
  }
]

var appSettings = [
  {
    name: 'AzureWebJobsStorage'
    value: '@Microsoft.KeyVault(VaultName=${vaultName};SecretName=${storageSecretName})'
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: insights.properties.ConnectionString
  }
  {
    name: 'ALLOCATION_POLICY_FILE'
    value: allocationPolicyFile
  }
  {
    name: 'REGISTRY_TABLE_PREFIX'
    value: registryTablePrefix
  }
  {
    name: 'RETIRED_CHECK'
    value: retiredCheck
  }
  {
    name: 'REPLAY_SIGNING_KEY'
    value: '@Microsoft.KeyVault(VaultName=${vaultName};SecretName=${replaySecretName})'
  }
]

// Flex Consumption takes the runtime from functionAppConfig and rejects these two settings;
// Linux Consumption needs them.
var consumptionSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'python'
  }
]

var flexConfig = {
  functionAppConfig: {
    deployment: {
      storage: {
        type: 'blobContainer'
        value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
        authentication: {
          type: 'UserAssignedIdentity'
          userAssignedIdentityResourceId: identity.id
        }
      }
    }
    scaleAndConcurrency: {
      maximumInstanceCount: maximumInstanceCount
      instanceMemoryMB: instanceMemoryMB
    }
    runtime: {
      name: 'python'
      version: '3.11'
    }
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: union(
    {
      serverFarmId: plan.id
      httpsOnly: true
      keyVaultReferenceIdentity: identity.id
      siteConfig: union(
        {
          minTlsVersion: '1.2'
          ftpsState: 'Disabled'
          appSettings: concat(appSettings, hubAppSettings, isFlex ? [] : consumptionSettings)
        },
        isFlex ? {} : { linuxFxVersion: 'Python|3.11' }
      )
    },
    isFlex ? flexConfig : {}
  )
  dependsOn: [
    vaultReader
    blobOwner
    storageSecret
    replaySecret
    hubSecrets
    packageContainer
  ]
}

// --- outputs: names and host names only, never a key -------------------------------------------------

output functionAppName string = app.name
output functionAppHostName string = app.properties.defaultHostName
output dpsName string = dps.name
output dpsIdScope string = dps.properties.idScope
output dpsGlobalHost string = 'global.azure-devices-provisioning.net'
output hubHostNames array = [for (hubName, i) in hubNames: hubs[i].properties.hostName]
output vaultResourceName string = vault.name
