package keymanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
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
			assert.Equal(t, 10*time.Second, parsed.requestTimeout) // the README's default attempt
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
	missingFile := filepath.Join(t.TempDir(), "missing")
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
tenant_id = "contoso tenant"`, `tenant_id is not a tenant id: a GUID, or a domain such as contoso.onmicrosoft.com; this value holds characters neither can`},
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
		{"missing secret file", clientSecretFor(`app_secret_file = "` + missingFile + `"`), `app_secret_file: unable to read "` + missingFile + `": no such file or directory`},
		{"secret file in a directory that does not exist", clientSecretFor(`app_secret_file = "/nonexistent/secret"`),
			`app_secret_file: unable to read the file it names (not an absolute path in an existing directory: the value is not repeated, in case it is a misplaced secret): no such file or directory`},
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

// Secrets as an operator might paste them into the wrong setting: an Entra ID client secret, and
// base64 ones that start with '/' as a path does, or with "//" as a URL without a scheme does.
var misplacedSecrets = []string{
	"Xq78Q~Vb1.c2D3e4F5g6H7i8J9k0L1m2N3o4P5qR",
	"/k3Jx9+Qz0pL2mN4bV6cX8zA1sD3fG5hJ7kL9qW0eR=",
	"//Jx9+Qz0pL2mN4bV6cX8zA1sD3fG5hJ7kL9qW0eR=",
}

// assertRepeatsNoPartOf asserts that message holds no 5 characters in a row of secret: a parser
// that quotes only the token before the first character it cannot read repeats a part of it.
func assertRepeatsNoPartOf(t *testing.T, message, secret string) {
	t.Helper()
	for i := 0; i+5 <= len(secret); i++ {
		if !assert.NotContains(t, message, secret[i:i+5], "the error repeats a part of the secret") {
			return
		}
	}
}

func TestAMisplacedSecretIsNotRepeatedByTheErrorThatRefusesIt(t *testing.T) {
	setWorkloadIdentityEnvironment(t)
	clientSecretWith := func(secretSetting string) string {
		return withCredential(`credential = "client_secret"
tenant_id = "` + signedInTenantID + `"
app_id = "` + signedInClientID + `"
` + secretSetting)
	}
	for _, tt := range []struct {
		setting string
		config  func(secret string) string
		message string
	}{
		{"app_secret_env", func(secret string) string { return clientSecretWith(`app_secret_env = "` + secret + `"`) },
			"app_secret_env is not the name of an environment variable: letters, digits and '_', not starting with a digit; " +
				"it names the variable that holds the secret, not the secret itself (the value is not repeated, in case it is a misplaced secret)"},
		{"app_secret_file", func(secret string) string { return clientSecretWith(`app_secret_file = "` + secret + `"`) },
			"app_secret_file: unable to read the file it names (not an absolute path in an existing directory: the value is not repeated, in case it is a misplaced secret): "},
		{"app_id", func(secret string) string {
			return withCredential(`credential = "workload_identity"
app_id = "` + secret + `"`)
		}, "app_id is not a client id: a GUID such as 00000000-0000-0000-0000-000000000000; this value is longer than a GUID or holds characters a GUID cannot"},
		{"tenant_id", func(secret string) string {
			return withCredential(`credential = "workload_identity"
tenant_id = "` + secret + `"`)
		}, "tenant_id is not a tenant id: a GUID, or a domain such as contoso.onmicrosoft.com; this value holds characters neither can, or is too long"},
		{"managed_identity_client_id", func(secret string) string {
			return withCredential(`credential = "managed_identity"
managed_identity_client_id = "` + secret + `"`)
		}, "managed_identity_client_id is not a client id: a GUID such as"},
		{"api_client_id", func(secret string) string {
			return `app_url = "https://app.example.net"
api_client_id = "` + secret + `"
credential = "managed_identity"`
		}, "api_client_id is not a client id: a GUID such as"},
		{"credential", func(secret string) string { return withCredential(`credential = "` + secret + `"`) },
			`credential is not one of "workload_identity", "managed_identity", "client_secret" or "default" (the value is not repeated`},
		{"server_name", func(secret string) string {
			return pluginConfig("https://app.example.net") + `server_name = "` + secret + `"`
		},
			"server_name is invalid: 1 to 63 lowercase letters"},
		{"request_timeout", func(secret string) string {
			return pluginConfig("https://app.example.net") + `request_timeout = "` + secret + `"`
		}, `request_timeout is not a duration such as "10s": time: invalid duration … (the text at fault is not repeated`},
		{"app_url", func(secret string) string { return pluginConfig(secret) },
			"app_url must be an absolute https URL: this value has no scheme or no host (the value is not repeated"},
		{"authority_host", func(secret string) string {
			return withCredential(`credential = "default"
authority_host = "` + secret + `"`)
		}, "authority_host must be an absolute https URL: this value has no scheme or no host"},
		{"app_secret_env, unquoted", func(secret string) string { return clientSecretWith(`app_secret_env = ` + secret) },
			"unable to decode plugin_data: At 6:"},
		{"a line of its own", func(secret string) string { return pluginConfig("https://app.example.net") + secret + "\n" },
			"unable to decode plugin_data: At 4:"},
		{"a quoted line of its own", func(secret string) string {
			return pluginConfig("https://app.example.net") + `"` + secret + `"` + "\n"
		}, "unable to decode plugin_data: At 5:1: key … expected start of object ('{') or assignment ('=')"},
	} {
		for i, secret := range misplacedSecrets {
			t.Run(fmt.Sprintf("%s, secret %d", tt.setting, i), func(t *testing.T) {
				if unquoted := !strings.Contains(tt.config(secret), `"`+secret+`"`); unquoted && strings.HasPrefix(secret, "//") {
					t.Skip("HCL reads an unquoted // and what follows as a comment")
				}
				_, err := parseSettings(tt.config(secret), trustDomain)
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.message)
				assertRepeatsNoPartOf(t, err.Error(), secret)
			})
		}
	}
}

func TestPluginDataThatIsNotHCLIsRefusedWithoutRepeatingTheTextAtFault(t *testing.T) {
	// A secret of letters and digits only is a token HCL's parser reads whole, and quotes whole.
	const secret = "hunter2Hunter2hunter2"
	for _, tt := range []struct{ config, message string }{
		{`app_secret_env = ` + secret + `~`, "unable to decode plugin_data: At 1:18: Unknown token (the text at fault is not repeated, in case it is a misplaced secret)"},
		{secret + "\n", "unable to decode plugin_data: At 2:1: key … expected start of object ('{') or assignment ('=') (the text at fault is not repeated"},
		{`"` + secret + `"`, "key … expected start of object ('{') or assignment ('=')"},
		{`app_url = "https://app.example.net" "` + secret + `"`, "key … expected start of object ('{') or assignment ('=')"},
		{`{"app_url": "https://app.example.net", "api_client_id": ` + secret + `}`, "unable to decode plugin_data: "},
	} {
		t.Run(tt.config, func(t *testing.T) {
			_, err := parseSettings(tt.config, trustDomain)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.message)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestValuesThatCannotBeSecretsAreStillNamedInErrors(t *testing.T) {
	directory := t.TempDir()
	for _, tt := range []struct {
		name, config, message string
	}{
		{"an unset variable", `app_secret_env = "TEST_AZURE_KV_KEYMANAGER_UNSET"`,
			`app_secret_env: the environment variable "TEST_AZURE_KV_KEYMANAGER_UNSET" is unset or empty`},
		{"a directory for a file", `app_secret_file = "` + directory + `"`, `app_secret_file: unable to read "` + directory + `": is a directory`},
		{"a file in an existing directory", `app_secret_file = "` + directory + `/app-secret"`,
			`app_secret_file: unable to read "` + directory + `/app-secret": no such file or directory`},
		{"a file at the root, where a secret starting with '/' would be", `app_secret_file = "/app-secret"`,
			"app_secret_file: unable to read the file it names (not an absolute path in an existing directory: the value is not repeated, in case it is a misplaced secret): no such file or directory"},
		{"a relative file", `app_secret_file = "app-secret"`, "app_secret_file: unable to read the file it names"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(withCredential(`credential = "client_secret"
tenant_id = "`+signedInTenantID+`"
app_id = "`+signedInClientID+`"
`+tt.config), trustDomain)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.message)
		})
	}
	for _, tt := range []struct {
		name, config, message string
	}{
		{"a name for a client id", `credential = "workload_identity"
app_id = "spire"`, `app_id "spire" is not a client id`},
		{"a GUID with a digit missing", `credential = "managed_identity"
managed_identity_client_id = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6"`, `managed_identity_client_id "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6" is not a client id`},
		{"a mistyped credential kind", `credential = "workload-identity"`, `credential "workload-identity" is not one of`},
		{"a host without https://", `credential = "default"
authority_host = "login.microsoftonline.us"`, `authority_host "login.microsoftonline.us" must be an absolute https URL`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setWorkloadIdentityEnvironment(t)
			_, err := parseSettings(withCredential(tt.config), trustDomain)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.message)
		})
	}
	_, err := parseSettings(`app_url = "https://app.example.net"
api_client_id = "api://keymanager"`, trustDomain)
	assert.ErrorContains(t, err, `api_client_id "api://keymanager" is not a client id`, "an Application ID URI where its client id belongs")
	_, err = parseSettings(`app_url = "https://app.example.net:port"`, trustDomain)
	assert.ErrorContains(t, err, "app_url is not a URL: invalid port … after host (the text at fault is not repeated, in case it is a misplaced secret)")
	_, err = parseSettings(`app_url = "https://app.example.net"
api_client_id = "`+apiClientID+`"
request_timeout = "1h"`, trustDomain)
	assert.ErrorContains(t, err, "request_timeout 1h0m0s must be more than 0 and at most 30s")
}

// inlineSecretSettings writes the inline secret setting in each way HCL's decoder would match to a
// setting named app_secret, were there one: quoted or not, in any case, with any character
// strings.EqualFold takes for another (ſ, U+017F, for s), or escaped.
var inlineSecretSettings = []string{
	`app_secret = "` + appSecret + `"`,
	`APP_SECRET = "` + appSecret + `"`,
	`"app_secret" = "` + appSecret + `"`,
	`"APP_SECRET" = "` + appSecret + `"`,
	`"App_Secret" = "` + appSecret + `"`,
	`"app_ſecret" = "` + appSecret + `"`,
	`"app\u005fsecret" = "` + appSecret + `"`,
	`app_secret { value = "` + appSecret + `" }`,
}

func TestAnInlineAppSecretIsRefusedWhateverTheQuotesOrCaseOfItsName(t *testing.T) {
	for _, setting := range inlineSecretSettings {
		t.Run(setting, func(t *testing.T) {
			s := serve(t)
			err := s.configure(t, withCredential(`credential = "client_secret"
tenant_id = "`+signedInTenantID+`"
app_id = "`+signedInClientID+`"
app_secret_env = "`+appSecretEnv+`"
`+setting))
			assertStatus(t, err, codes.InvalidArgument, "app_secret is refused: a secret does not belong in the configuration; set app_secret_file or app_secret_env to where it is")
			assert.NotContains(t, err.Error(), appSecret)
			assert.Nil(t, s.credential.builtWith(), "a credential was built from a configuration with the secret in it")
		})
	}
	for _, key := range []string{"app_secret", "APP_SECRET", "App_Secret"} {
		t.Run("JSON "+key, func(t *testing.T) {
			_, err := parseSettings(`{"app_url": "https://app.example.net", "api_client_id": "`+apiClientID+`", "credential": "managed_identity", "`+
				key+`": "`+appSecret+`"}`, trustDomain)
			assert.ErrorContains(t, err, "app_secret is refused")
		})
	}
}

func TestRetiredFunctionKeySettingsAreRefusedWhateverTheQuotesOrCaseOfTheirName(t *testing.T) {
	for _, tt := range []struct{ setting, named string }{
		{`"` + retiredFunctionKeyPrefix + `env" = "SPIRE_KEY"`, retiredFunctionKeyPrefix + "env is no longer used"},
		{`"FUNCTION_KEY_FILE" = "/run/secrets/key"`, "FUNCTION_KEY_FILE is no longer used"},
		{`Function_Key_Env = "SPIRE_KEY"`, "Function_Key_Env is no longer used"},
		{`"function_key_ſecret" = "spire-key"`, "function_key_* settings are no longer used"},
		{`"function_key_spire key" = "spire-key"`, "function_key_* settings are no longer used"},
	} {
		t.Run(tt.setting, func(t *testing.T) {
			_, err := parseSettings(pluginConfig("https://app.example.net")+tt.setting, trustDomain)
			assert.ErrorContains(t, err, tt.named+": the app takes no function keys; the plugin signs in to Microsoft Entra ID instead")
		})
	}
}

func TestASettingInAnotherCaseOrQuotedTakesEffectAsItself(t *testing.T) {
	t.Setenv(appSecretEnv, appSecret)
	parsed, err := parseSettings(`"APP_URL" = "https://app.example.net"
Api_Client_Id = "`+apiClientID+`"
"Server_Name" = "spire-1"
CREDENTIAL = "client_secret"
"tenant_id" = "`+signedInTenantID+`"
"APP_ID" = "`+signedInClientID+`"
"APP_SECRET_ENV" = "`+appSecretEnv+`"`, trustDomain)
	require.NoError(t, err)
	assert.Equal(t, "spire-1", parsed.serverName)
	assert.Equal(t, credentialSettings{kind: clientSecret, tenantID: signedInTenantID, appID: signedInClientID,
		appSecret: appSecret, appSecretSource: "environment variable " + appSecretEnv}, parsed.credential)
}

func TestASettingGivenTwiceIsRefusedRatherThanTheLastTakenSilently(t *testing.T) {
	for _, tt := range []struct{ name, config, message string }{
		{"the same name", pluginConfig("https://app.example.net") + `server_name = "spire-1"
server_name = "spire-2"`, "server_name is set 2 times (at 4:1, 5:1), in whatever case or quotes: set it once"},
		{"another case", pluginConfig("https://app.example.net") + `server_name = "spire-1"
SERVER_NAME = "spire-2"`, "server_name is set 2 times (at 4:1, 5:1)"},
		{"quoted", pluginConfig("https://app.example.net") + `request_timeout = "5s"
"request_timeout" = "20s"
"REQUEST_TIMEOUT" = "25s"`, "request_timeout is set 3 times (at 4:1, 5:1, 6:1)"},
		{"the secret's file", withCredential(`credential = "client_secret"
tenant_id = "` + signedInTenantID + `"
app_id = "` + signedInClientID + `"
app_secret_file = "/run/secrets/app-secret"
"App_Secret_File" = "/tmp/app-secret"`), "app_secret_file is set 2 times (at 6:1, 7:1)"},
		{"JSON", `{"app_url": "https://app.example.net", "APP_URL": "https://other.example.net"}`, "app_url is set 2 times, in whatever case or quotes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(tt.config, trustDomain)
			assert.ErrorContains(t, err, tt.message)
		})
	}
}

func TestEveryInvalidSettingIsReportedAtOnce(t *testing.T) {
	config := `app_url = "http://app.example.net"
server_name = "Spire-1"
request_timeout = "31s"
credential = "managed_identity"
app_id = "spire"
"function_key_env" = "SPIRE_KEY"`
	messages := []string{
		"function_key_env is no longer used",
		`app_url "http://app.example.net" must use https`,
		"server_name is invalid",
		"request_timeout 31s must be more than 0 and at most 30s",
		"api_client_id is required",
		`app_id does not apply to credential "managed_identity"`,
		`app_id "spire" is not a client id`,
	}
	_, err := parseSettings(config, "")
	require.Error(t, err)
	for _, message := range append(messages, "the server's trust domain is missing") {
		assert.ErrorContains(t, err, message)
	}

	s := serve(t)
	response, err := s.config.Validate(context.Background(), &configv1.ValidateRequest{
		HclConfiguration: config, CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
	})
	require.NoError(t, err)
	assert.False(t, response.Valid)
	require.Len(t, response.Notes, len(messages), "one note per error: %q", response.Notes)
	for i, message := range messages {
		assert.Contains(t, response.Notes[i], message)
	}
}
