package keymanager

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/token"
)

const (
	defaultRequestTimeout = 10 * time.Second
	// SPIRE gives each KeyManager call 30 s; a longer attempt could never finish inside it.
	maxRequestTimeout = 30 * time.Second
	// Every setting of the retired function key scheme starts so.
	retiredFunctionKeyPrefix = "function_key_"
)

// The app's rule for server names: they become part of blob paths and Key Vault key names.
var serverNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

var (
	guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$`)
	// A tenant is named by its GUID or one of its domains; azidentity allows no other characters.
	tenantIDPattern = regexp.MustCompile(`^[0-9A-Za-z.-]{1,256}$`)
)

// credentialKind is how the plugin signs in to Microsoft Entra ID.
type credentialKind string

const (
	workloadIdentity credentialKind = "workload_identity"
	managedIdentity  credentialKind = "managed_identity"
	clientSecret     credentialKind = "client_secret"
	defaultChain     credentialKind = "default"
)

const credentialKinds = `"workload_identity", "managed_identity", "client_secret" or "default"`

// settingsOfCredential lists the settings each credential kind takes besides credential itself.
// Another credential setting would be ignored by that kind, so it is refused instead.
var settingsOfCredential = map[credentialKind][]string{
	workloadIdentity: {"tenant_id", "app_id", "authority_host", "disable_instance_discovery"},
	managedIdentity:  {"managed_identity_client_id"},
	clientSecret:     {"tenant_id", "app_id", "app_secret_file", "app_secret_env", "authority_host", "disable_instance_discovery"},
	defaultChain:     {"authority_host", "disable_instance_discovery"},
}

// The variables the Azure workload identity webhook injects into a pod that uses it.
const (
	clientIDVariable           = "AZURE_CLIENT_ID"
	tenantIDVariable           = "AZURE_TENANT_ID"
	federatedTokenFileVariable = "AZURE_FEDERATED_TOKEN_FILE"
)

// pluginData is the plugin_data block of the server's configuration.
type pluginData struct {
	AppURL         string `hcl:"app_url"`
	ServerName     string `hcl:"server_name"`
	RequestTimeout string `hcl:"request_timeout"`
	APIClientID    string `hcl:"api_client_id"`

	Credential               string `hcl:"credential"`
	TenantID                 string `hcl:"tenant_id"`
	AppID                    string `hcl:"app_id"`
	AppSecretFile            string `hcl:"app_secret_file"`
	AppSecretEnv             string `hcl:"app_secret_env"`
	ManagedIdentityClientID  string `hcl:"managed_identity_client_id"`
	AuthorityHost            string `hcl:"authority_host"`
	DisableInstanceDiscovery bool   `hcl:"disable_instance_discovery"`

	// Settings the plugin does not take: kept to refuse the retired ones and an inline secret.
	UnknownSettings map[string][]token.Pos `hcl:",unusedKeyPositions"`
}

// namedCredentialSettings are the credential settings the configuration gives a value.
func (d *pluginData) namedCredentialSettings() []string {
	given := map[string]bool{
		"tenant_id":                  d.TenantID != "",
		"app_id":                     d.AppID != "",
		"app_secret_file":            d.AppSecretFile != "",
		"app_secret_env":             d.AppSecretEnv != "",
		"managed_identity_client_id": d.ManagedIdentityClientID != "",
		"authority_host":             d.AuthorityHost != "",
		"disable_instance_discovery": d.DisableInstanceDiscovery,
	}
	var named []string
	for name, isGiven := range given {
		if isGiven {
			named = append(named, name)
		}
	}
	slices.Sort(named)
	return named
}

// settings are the validated configuration the plugin works with.
type settings struct {
	appURL         *url.URL
	serverName     string // empty: the app's default server
	trustDomain    string
	requestTimeout time.Duration
	tokenScope     string // api://<api_client_id>/.default
	credential     credentialSettings
}

// credentialSettings say how to sign in to Microsoft Entra ID.
type credentialSettings struct {
	kind                     credentialKind
	tenantID                 string // workload_identity and client_secret
	appID                    string // workload_identity and client_secret
	federatedTokenFile       string // workload_identity
	managedIdentityClientID  string // managed_identity; empty: the system-assigned identity
	appSecret                string // client_secret; never logged
	appSecretSource          string // where the secret was read from, for the log
	authorityHost            string // empty: AZURE_AUTHORITY_HOST, else the public cloud
	disableInstanceDiscovery bool
}

// parseSettings decodes and validates plugin_data; every error names the setting at fault.
func parseSettings(hclConfiguration, trustDomain string) (*settings, error) {
	var data pluginData
	if err := hcl.Decode(&data, hclConfiguration); err != nil {
		return nil, fmt.Errorf("unable to decode plugin_data: %w", err)
	}
	if err := refuseUnknownSettings(data.UnknownSettings); err != nil {
		return nil, err
	}
	if trustDomain == "" {
		return nil, fmt.Errorf("the server's trust domain is missing from the core configuration")
	}
	appURL, err := parseAppURL(data.AppURL)
	if err != nil {
		return nil, err
	}
	if data.ServerName != "" && !serverNamePattern.MatchString(data.ServerName) {
		return nil, fmt.Errorf("server_name %q is invalid: 1 to 63 lowercase letters, digits, '-', '.' or '_', starting and ending with a letter or digit", data.ServerName)
	}
	timeout, err := parseRequestTimeout(data.RequestTimeout)
	if err != nil {
		return nil, err
	}
	if data.APIClientID == "" {
		return nil, fmt.Errorf("api_client_id is required: the client id of the app's API application in Microsoft Entra ID")
	}
	if err := validateClientID("api_client_id", data.APIClientID); err != nil {
		return nil, err
	}
	credential, err := parseCredential(&data)
	if err != nil {
		return nil, err
	}
	return &settings{
		appURL:         appURL,
		serverName:     data.ServerName,
		trustDomain:    trustDomain,
		requestTimeout: timeout,
		tokenScope:     "api://" + strings.ToLower(data.APIClientID) + "/.default",
		credential:     credential,
	}, nil
}

// refuseUnknownSettings refuses the settings of the retired function key scheme, naming what
// replaced them, and a secret written into the configuration. Other unknown settings are ignored,
// as SPIRE's own plugins do.
func refuseUnknownSettings(unknown map[string][]token.Pos) error {
	names := make([]string, 0, len(unknown))
	for name := range unknown {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch lower := strings.ToLower(name); {
		case strings.HasPrefix(lower, retiredFunctionKeyPrefix):
			return fmt.Errorf("%s is no longer used: the app takes no function keys; the plugin signs in to Microsoft Entra ID instead: set credential and api_client_id", name)
		case lower == "app_secret":
			return fmt.Errorf("app_secret is refused: a secret does not belong in the configuration; set app_secret_file or app_secret_env to where it is")
		}
	}
	return nil
}

// parseAppURL accepts the app's base URL: HTTPS, or HTTP to a loopback address (the local stack),
// since the access token travels in a header.
func parseAppURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("app_url is required: the app's base URL, e.g. https://<app>.azurewebsites.net")
	}
	return parseBaseURL("app_url", raw, isLoopback)
}

// parseBaseURL accepts an absolute https URL, or http where httpAllowed says so, without user
// info, query or fragment. Its errors never repeat the user info or query, which may hold a secret.
func parseBaseURL(setting, raw string, httpAllowed func(*url.URL) bool) (*url.URL, error) {
	parsed, err := url.Parse(raw)
	if err != nil {
		var urlError *url.Error
		if errors.As(err, &urlError) {
			err = urlError.Err // without the URL it quotes
		}
		return nil, fmt.Errorf("%s is not a URL: %w", setting, err)
	}
	shown := (&url.URL{Scheme: parsed.Scheme, Host: parsed.Host, Path: parsed.Path}).String()
	switch {
	case parsed.Host == "" || (parsed.Scheme != "https" && parsed.Scheme != "http"):
		return nil, fmt.Errorf("%s %q must be an absolute https URL", setting, shown)
	case parsed.User != nil || parsed.RawQuery != "" || parsed.ForceQuery || parsed.Fragment != "":
		return nil, fmt.Errorf("%s %q must not hold user info, a query or a fragment", setting, shown)
	case parsed.Scheme == "http" && !httpAllowed(parsed):
		return nil, fmt.Errorf("%s %q must use https: only a loopback address may use http", setting, shown)
	}
	parsed.Path = strings.TrimSuffix(parsed.Path, "/")
	return parsed, nil
}

func isLoopback(appURL *url.URL) bool {
	host := appURL.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parseRequestTimeout(raw string) (time.Duration, error) {
	if raw == "" {
		return defaultRequestTimeout, nil
	}
	timeout, err := time.ParseDuration(raw)
	if err != nil {
		return 0, fmt.Errorf("request_timeout %q is not a duration such as \"10s\": %w", raw, err)
	}
	if timeout <= 0 || timeout > maxRequestTimeout {
		return 0, fmt.Errorf("request_timeout %q must be more than 0 and at most %s", raw, maxRequestTimeout)
	}
	return timeout, nil
}

// parseCredential validates the credential settings of the kind named, and reads what that kind
// takes from the environment or a file.
func parseCredential(data *pluginData) (credentialSettings, error) {
	kind := credentialKind(data.Credential)
	takes, known := settingsOfCredential[kind]
	switch {
	case data.Credential == "":
		return credentialSettings{}, fmt.Errorf("credential is required: how to sign in to Microsoft Entra ID, one of %s", credentialKinds)
	case !known:
		return credentialSettings{}, fmt.Errorf("credential %q is not one of %s", data.Credential, credentialKinds)
	}
	for _, name := range data.namedCredentialSettings() {
		if !slices.Contains(takes, name) {
			return credentialSettings{}, fmt.Errorf("%s does not apply to credential %q, which takes only %s", name, kind, strings.Join(takes, ", "))
		}
	}
	if err := validateIDs(data); err != nil {
		return credentialSettings{}, err
	}
	credential := credentialSettings{
		kind:                     kind,
		tenantID:                 data.TenantID,
		appID:                    data.AppID,
		managedIdentityClientID:  data.ManagedIdentityClientID,
		disableInstanceDiscovery: data.DisableInstanceDiscovery,
	}
	if data.AuthorityHost != "" {
		authority, err := parseBaseURL("authority_host", data.AuthorityHost, func(*url.URL) bool { return false })
		if err != nil {
			return credentialSettings{}, err
		}
		credential.authorityHost = authority.String() + "/"
	}
	var err error
	switch kind {
	case workloadIdentity:
		err = credential.readWorkloadIdentityEnvironment()
	case clientSecret:
		switch {
		case data.TenantID == "":
			err = fmt.Errorf("tenant_id is required with credential %q: the tenant of the app registration it signs in as", kind)
		case data.AppID == "":
			err = fmt.Errorf("app_id is required with credential %q: the client id of the app registration it signs in as", kind)
		default:
			credential.appSecret, credential.appSecretSource, err = readAppSecret(data)
		}
	}
	return credential, err
}

func validateIDs(data *pluginData) error {
	if data.TenantID != "" && !tenantIDPattern.MatchString(data.TenantID) {
		return fmt.Errorf("tenant_id %q is not a tenant id: a GUID, or a domain such as contoso.onmicrosoft.com", data.TenantID)
	}
	if err := validateClientID("app_id", data.AppID); err != nil {
		return err
	}
	return validateClientID("managed_identity_client_id", data.ManagedIdentityClientID)
}

// validateClientID accepts an empty value, which the caller has dealt with, or a GUID.
func validateClientID(setting, value string) error {
	if value != "" && !guidPattern.MatchString(value) {
		return fmt.Errorf("%s %q is not a client id: a GUID such as 00000000-0000-0000-0000-000000000000", setting, value)
	}
	return nil
}

// readWorkloadIdentityEnvironment takes what tenant_id and app_id leave open, and the service
// account token's file, from the variables the workload identity webhook injects. Their absence
// is an error here: the default credential chain would go on to the node's managed identity and
// sign in as another identity without a word.
func (c *credentialSettings) readWorkloadIdentityEnvironment() error {
	var missing []string
	fromEnvironment := func(value *string, variable string) {
		if *value == "" {
			if *value = strings.TrimSpace(os.Getenv(variable)); *value == "" {
				missing = append(missing, variable)
			}
		}
	}
	fromEnvironment(&c.tenantID, tenantIDVariable)
	fromEnvironment(&c.appID, clientIDVariable)
	fromEnvironment(&c.federatedTokenFile, federatedTokenFileVariable)
	if len(missing) == 0 {
		return nil
	}
	unset := missing[0] + " is unset"
	if last := len(missing) - 1; last > 0 {
		unset = strings.Join(missing[:last], ", ") + " and " + missing[last] + " are unset"
	}
	return fmt.Errorf("credential %q: %s: the Azure workload identity webhook did not inject it into this container "+
		"(check the pod's label azure.workload.identity/use: \"true\" and its service account's annotation azure.workload.identity/client-id); "+
		"the default credential chain would silently have signed in with the node's identity instead", workloadIdentity, unset)
}

// readAppSecret reads the secret from the named file or environment variable. The configuration
// names where the secret is, never the secret itself.
func readAppSecret(data *pluginData) (secret, source string, err error) {
	switch {
	case data.AppSecretEnv != "" && data.AppSecretFile != "":
		return "", "", fmt.Errorf("app_secret_file and app_secret_env are exclusive: set one")
	case data.AppSecretEnv != "":
		secret = strings.TrimSpace(os.Getenv(data.AppSecretEnv))
		if secret == "" {
			return "", "", fmt.Errorf("app_secret_env: the environment variable %q is unset or empty", data.AppSecretEnv)
		}
		return secret, "environment variable " + data.AppSecretEnv, nil
	case data.AppSecretFile != "":
		content, err := os.ReadFile(data.AppSecretFile)
		if err != nil {
			return "", "", fmt.Errorf("app_secret_file: unable to read %q: %w", data.AppSecretFile, err)
		}
		secret = strings.TrimSpace(string(content))
		if secret == "" {
			return "", "", fmt.Errorf("app_secret_file: %q is empty", data.AppSecretFile)
		}
		return secret, "file " + data.AppSecretFile, nil
	default:
		return "", "", fmt.Errorf("app_secret_file or app_secret_env is required with credential %q: where to read the app registration's secret", clientSecret)
	}
}
