package keymanager

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
)

const (
	appSecret       = "app-secret-that-must-stay-secret"
	appSecretEnv    = "TEST_AZURE_KV_KEYMANAGER_APP_SECRET"
	otherClientID   = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
	federatedTokens = "/var/run/secrets/azure/tokens/azure-identity-token"
)

// withCredential is a plugin_data for the app at https://app.example.net with the given credential settings.
func withCredential(credentialSettings string) string {
	return `app_url = "https://app.example.net"
api_client_id = "` + apiClientID + `"
` + credentialSettings
}

// setWorkloadIdentityEnvironment sets the variables as the workload identity webhook injects them.
func setWorkloadIdentityEnvironment(t *testing.T) {
	t.Setenv(tenantIDVariable, signedInTenantID)
	t.Setenv(clientIDVariable, signedInClientID)
	t.Setenv(federatedTokenFileVariable, federatedTokens)
}

// unsetEnvironment removes variables for the test, and puts them back after it.
func unsetEnvironment(t *testing.T, variables ...string) {
	for _, variable := range variables {
		t.Setenv(variable, "")
		require.NoError(t, os.Unsetenv(variable))
	}
}

func TestEachCredentialKindsSettings(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "app-secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(appSecret+"\n"), 0o600))
	t.Setenv(appSecretEnv, " "+appSecret+" ")
	setWorkloadIdentityEnvironment(t)
	for _, tt := range []struct {
		name, config string
		want         credentialSettings
	}{
		{"workload identity, as the webhook injects it", `credential = "workload_identity"`, credentialSettings{
			kind: workloadIdentity, tenantID: signedInTenantID, appID: signedInClientID, federatedTokenFile: federatedTokens,
		}},
		{"workload identity, tenant and app overridden, in a sovereign cloud", `credential = "workload_identity"
tenant_id = "contoso.onmicrosoft.us"
app_id = "` + otherClientID + `"
authority_host = "https://login.microsoftonline.us"`, credentialSettings{
			kind: workloadIdentity, tenantID: "contoso.onmicrosoft.us", appID: otherClientID, federatedTokenFile: federatedTokens,
			authorityHost: "https://login.microsoftonline.us/",
		}},
		{"system-assigned managed identity", `credential = "managed_identity"`, credentialSettings{kind: managedIdentity}},
		{"user-assigned managed identity", `credential = "managed_identity"
managed_identity_client_id = "` + otherClientID + `"`, credentialSettings{kind: managedIdentity, managedIdentityClientID: otherClientID}},
		{"client secret from a file, against a local stand-in", `credential = "client_secret"
tenant_id = "` + signedInTenantID + `"
app_id = "` + signedInClientID + `"
app_secret_file = "` + secretFile + `"
authority_host = "https://localhost:9443/"
disable_instance_discovery = true`, credentialSettings{
			kind: clientSecret, tenantID: signedInTenantID, appID: signedInClientID, appSecret: appSecret, appSecretSource: "file " + secretFile,
			authorityHost: "https://localhost:9443/", disableInstanceDiscovery: true,
		}},
		{"client secret from the environment", `credential = "client_secret"
tenant_id = "` + signedInTenantID + `"
app_id = "` + signedInClientID + `"
app_secret_env = "` + appSecretEnv + `"`, credentialSettings{
			kind: clientSecret, tenantID: signedInTenantID, appID: signedInClientID, appSecret: appSecret, appSecretSource: "environment variable " + appSecretEnv,
		}},
		{"the default chain", `credential = "default"
authority_host = "https://login.chinacloudapi.cn/"`, credentialSettings{kind: defaultChain, authorityHost: "https://login.chinacloudapi.cn/"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parsed, err := parseSettings(withCredential(tt.config), trustDomain)
			require.NoError(t, err)
			assert.Equal(t, tt.want, parsed.credential)
			assert.Equal(t, tokenScope, parsed.tokenScope)
			assert.Equal(t, defaultRequestTimeout, parsed.requestTimeout)
		})
	}
}

func TestTheScopeIsTheAPIsWhateverTheCaseOfItsClientID(t *testing.T) {
	parsed, err := parseSettings(`app_url = "https://app.example.net"
api_client_id = "0F6A4B1C-2D3E-4F50-8A9B-0C1D2E3F4A5B"
credential = "managed_identity"
request_timeout = "3s"`, trustDomain)
	require.NoError(t, err)
	assert.Equal(t, tokenScope, parsed.tokenScope)
	assert.Equal(t, 3*time.Second, parsed.requestTimeout)
}

func TestInvalidCredentialSettingsAreRefusedNamingTheSetting(t *testing.T) {
	emptyFile := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(emptyFile, []byte("\n"), 0o600))
	t.Setenv(appSecretEnv, appSecret)
	setWorkloadIdentityEnvironment(t)
	clientSecretFor := func(secretSettings string) string {
		return `credential = "client_secret"
tenant_id = "` + signedInTenantID + `"
app_id = "` + signedInClientID + `"
` + secretSettings
	}
	for _, tt := range []struct {
		name, config, message string
	}{
		{"no credential", ``, `credential is required: how to sign in to Microsoft Entra ID, one of "workload_identity", "managed_identity", "client_secret" or "default"`},
		{"unknown credential", `credential = "certificate"`, `credential "certificate" is not one of`},
		{"app id with a managed identity", `credential = "managed_identity"
app_id = "` + otherClientID + `"`, `app_id does not apply to credential "managed_identity", which takes only managed_identity_client_id`},
		{"authority host with a managed identity", `credential = "managed_identity"
authority_host = "https://login.microsoftonline.us"`, `authority_host does not apply to credential "managed_identity"`},
		{"a secret with a workload identity", `credential = "workload_identity"
app_secret_env = "` + appSecretEnv + `"`, `app_secret_env does not apply to credential "workload_identity"`},
		{"tenant id with the default chain", `credential = "default"
tenant_id = "` + signedInTenantID + `"`, `tenant_id does not apply to credential "default", which takes only authority_host, disable_instance_discovery`},
		{"tenant id not a tenant", `credential = "workload_identity"
tenant_id = "contoso tenant"`, `tenant_id "contoso tenant" is not a tenant id`},
		{"app id not a GUID", `credential = "workload_identity"
app_id = "spire"`, `app_id "spire" is not a client id`},
		{"managed identity client id not a GUID", `credential = "managed_identity"
managed_identity_client_id = "spire"`, `managed_identity_client_id "spire" is not a client id`},
		{"authority host over http", `credential = "default"
authority_host = "http://localhost:8080"`, `authority_host "http://localhost:8080" must use https`},
		{"authority host not absolute", `credential = "default"
authority_host = "login.microsoftonline.us"`, `authority_host "login.microsoftonline.us" must be an absolute https URL`},
		{"client secret without tenant", `credential = "client_secret"
app_id = "` + signedInClientID + `"
app_secret_env = "` + appSecretEnv + `"`, `tenant_id is required with credential "client_secret"`},
		{"client secret without app id", `credential = "client_secret"
tenant_id = "` + signedInTenantID + `"
app_secret_env = "` + appSecretEnv + `"`, `app_id is required with credential "client_secret"`},
		{"client secret without a secret", clientSecretFor(``), `app_secret_file or app_secret_env is required with credential "client_secret"`},
		{"both secret sources", clientSecretFor(`app_secret_env = "` + appSecretEnv + `"
app_secret_file = "` + emptyFile + `"`), "app_secret_file and app_secret_env are exclusive: set one"},
		{"unset secret variable", clientSecretFor(`app_secret_env = "TEST_AZURE_KV_KEYMANAGER_UNSET"`),
			`app_secret_env: the environment variable "TEST_AZURE_KV_KEYMANAGER_UNSET" is unset or empty`},
		{"missing secret file", clientSecretFor(`app_secret_file = "/nonexistent/secret"`), `app_secret_file: unable to read "/nonexistent/secret"`},
		{"empty secret file", clientSecretFor(`app_secret_file = "` + emptyFile + `"`), `app_secret_file: "` + emptyFile + `" is empty`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t)
			err := s.configure(t, withCredential(tt.config))
			assertStatus(t, err, codes.InvalidArgument, tt.message)
			assert.NotContains(t, err.Error(), appSecret)
			assert.Nil(t, s.credential.builtWith(), "a credential was built from invalid settings")
		})
	}
}

func TestRetiredFunctionKeySettingsAreRefusedNamingWhatReplacedThem(t *testing.T) {
	for _, suffix := range []string{"env", "file"} {
		setting := "function_key_" + suffix
		t.Run(setting, func(t *testing.T) {
			s := serve(t)
			err := s.configure(t, pluginConfig("https://app.example.net")+setting+` = "spire-key"`)
			assertStatus(t, err, codes.InvalidArgument, setting+" is no longer used: the app takes no function keys; "+
				"the plugin signs in to Microsoft Entra ID instead: set credential and api_client_id")
			// Also when nothing else is configured yet: the reason comes first.
			err = s.configure(t, `app_url = "https://app.example.net"
`+setting+` = "spire-key"`)
			assertStatus(t, err, codes.InvalidArgument, setting+" is no longer used")
		})
	}
}

func TestAnInlineAppSecretIsRefused(t *testing.T) {
	s := serve(t)
	err := s.configure(t, withCredential(`credential = "client_secret"
tenant_id = "`+signedInTenantID+`"
app_id = "`+signedInClientID+`"
app_secret = "`+appSecret+`"`))
	assertStatus(t, err, codes.InvalidArgument, "app_secret is refused: a secret does not belong in the configuration; set app_secret_file or app_secret_env to where it is")
	assert.NotContains(t, err.Error(), appSecret)
}

func TestWorkloadIdentityRefusesToStartWithoutTheWebhooksVariables(t *testing.T) {
	for _, tt := range []struct {
		name, config string
		unset        []string
		message      string
	}{
		{"none injected", `credential = "workload_identity"`, []string{tenantIDVariable, clientIDVariable, federatedTokenFileVariable},
			"AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE are unset"},
		{"no token file", `credential = "workload_identity"`, []string{federatedTokenFileVariable}, "AZURE_FEDERATED_TOKEN_FILE is unset"},
		{"settings name tenant and app, but no token file", `credential = "workload_identity"
tenant_id = "` + signedInTenantID + `"
app_id = "` + signedInClientID + `"`, []string{tenantIDVariable, clientIDVariable, federatedTokenFileVariable}, "AZURE_FEDERATED_TOKEN_FILE is unset"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setWorkloadIdentityEnvironment(t)
			unsetEnvironment(t, tt.unset...)
			_, err := parseSettings(withCredential(tt.config), trustDomain)
			require.Error(t, err)
			assert.Contains(t, err.Error(), `credential "workload_identity": `+tt.message+": the Azure workload identity webhook did not inject it into this container")
			assert.Contains(t, err.Error(), "the default credential chain would silently have signed in with the node's identity instead")
		})
	}
	t.Run("an empty variable is as good as none", func(t *testing.T) {
		setWorkloadIdentityEnvironment(t)
		t.Setenv(clientIDVariable, " ")
		_, err := parseSettings(withCredential(`credential = "workload_identity"`), trustDomain)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "AZURE_CLIENT_ID is unset")
	})
}

func TestURLErrorsDoNotRepeatUserInfoOrQuery(t *testing.T) {
	for _, tt := range []struct {
		setting, value, message string
	}{
		{"app_url", "https://spire:hunter2@app.example.net/base", `app_url "https://app.example.net/base" must not hold user info, a query or a fragment`},
		{"app_url", "https://app.example.net/?code=hunter2", `app_url "https://app.example.net/" must not hold user info`},
		{"app_url", "https://spire:hunter2@app.example.net:port", "app_url is not a URL: invalid port"},
		{"authority_host", "https://login.example.net/?sig=hunter2", `authority_host "https://login.example.net/" must not hold user info`},
		{"authority_host", "https://spire:hunter2@login.example.net", `authority_host "https://login.example.net" must not hold user info`},
	} {
		t.Run(tt.setting+" "+tt.message, func(t *testing.T) {
			appURL := "https://app.example.net"
			authority := ""
			if tt.setting == "app_url" {
				appURL = tt.value
			} else {
				authority = `authority_host = "` + tt.value + `"`
			}
			_, err := parseSettings(`app_url = "`+appURL+`"
api_client_id = "`+apiClientID+`"
credential = "default"
`+authority, trustDomain)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.message)
			assert.NotContains(t, err.Error(), "hunter2")
			assert.NotContains(t, err.Error(), "spire:")
		})
	}
}
