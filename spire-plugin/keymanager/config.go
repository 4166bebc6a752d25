package keymanager

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"
	jsonparser "github.com/hashicorp/hcl/json/parser"
)

const (
	defaultRequestTimeout = 10 * time.Second
	// SPIRE gives each KeyManager call 30 s; a longer attempt could never finish inside it.
	maxRequestTimeout = 30 * time.Second
	// Every setting of the retired function key scheme starts so.
	retiredFunctionKeyPrefix = "function_key_"
	// The setting refused because it would hold the secret itself.
	inlineSecretSetting = "app_secret"
)

// The app's rule for server names. A name selects the server id the app acts under: the id in the
// blob <blob path>.servers/<server name>, or the one derived from the name.
var serverNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

var (
	guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$`)
	// A tenant is named by its GUID or one of its domains; azidentity allows no other characters.
	tenantIDPattern = regexp.MustCompile(`^[0-9A-Za-z.-]{1,256}$`)
	// The name of an environment variable, as a shell writes it.
	environmentVariablePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// What an error may quote back of an invalid value. A secret pasted into the wrong setting must
// not reach SPIRE's log through the error that refuses it, so a value is repeated only when it has
// the shape of what the setting expects, and an Entra ID client secret (40 characters, with '~')
// never has it; otherwise the error says what is wrong with the value without repeating it.
var (
	// An id no longer than a GUID, of the characters a GUID or a tenant's domain may hold, or an
	// Application ID URI such as api://keymanager, written where its client id belongs.
	shownIDPattern = regexp.MustCompile(`^([0-9A-Za-z.-]{1,36}|api://[0-9A-Za-z.-]{1,64})$`)
	// A host name without https://, in lowercase, with a top-level domain of letters.
	shownHostPattern = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,63}(:[0-9]{1,5})?(/[a-z0-9._/-]*)?$`)
	// A word, as a mistyped credential kind is.
	shownCredentialPattern = regexp.MustCompile(`^[A-Za-z_-]{1,32}$`)
)

// notRepeated ends the errors that do not repeat the value at fault.
const notRepeated = "the value is not repeated, in case it is a misplaced secret"

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
}

// knownSettings are the settings pluginData takes, by their case-folded name.
var knownSettings = func() map[string]string {
	known := make(map[string]string)
	fields := reflect.TypeFor[pluginData]()
	for i := range fields.NumField() {
		name, _, _ := strings.Cut(fields.Field(i).Tag.Get("hcl"), ",")
		known[foldCase(name)] = name
	}
	return known
}()

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

// settingsErrors collects every error plugin_data holds, so that Configure and Validate report
// them all at once, as SPIRE's pluginconf.Build does, rather than one per attempt.
type settingsErrors []error

func (e *settingsErrors) add(err error) {
	if err != nil {
		*e = append(*e, err)
	}
}

// parseSettings decodes and validates plugin_data. Its error joins (errors.Join) every error found,
// each naming the setting at fault.
func parseSettings(hclConfiguration, trustDomain string) (*settings, error) {
	file, err := parsePluginData(hclConfiguration)
	if err != nil {
		return nil, err
	}
	var errs settingsErrors
	checkSettingNames(file, &errs)
	var data pluginData
	if err := hcl.DecodeObject(&data, file); err != nil {
		errs.add(fmt.Errorf("unable to decode plugin_data: %s", withoutQuotedText(err.Error())))
		return nil, errors.Join(errs...)
	}
	if trustDomain == "" {
		errs.add(fmt.Errorf("the server's trust domain is missing from the core configuration"))
	}
	appURL, err := parseAppURL(data.AppURL)
	errs.add(err)
	if data.ServerName != "" && !serverNamePattern.MatchString(data.ServerName) {
		errs.add(fmt.Errorf("server_name is invalid: 1 to 63 lowercase letters, digits, '-', '.' or '_', starting and ending with a letter or digit; "+
			"this value %s (%s)", serverNameFault(data.ServerName), notRepeated))
	}
	timeout, err := parseRequestTimeout(data.RequestTimeout)
	errs.add(err)
	if data.APIClientID == "" {
		errs.add(fmt.Errorf("api_client_id is required: the client id of the app's API application in Microsoft Entra ID"))
	}
	errs.add(validateClientID("api_client_id", data.APIClientID))
	credential := parseCredential(&data, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
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

// parsePluginData parses plugin_data, HCL or JSON, as hcl.Decode does, keeping a setting given more
// than once as hcl.Decode does (it would then take the last), so that checkSettingNames can look
// at the settings' names before the decoder takes them.
func parsePluginData(configuration string) (*ast.File, error) {
	parse := hclparser.ParseDontErrorOnDuplicateKeys
	// hcl.Decode reads JSON when the first character that is not a space opens an object.
	if first, _ := utf8.DecodeRuneInString(strings.TrimLeftFunc(configuration, unicode.IsSpace)); first == '{' {
		parse = jsonparser.Parse
	}
	file, err := parse([]byte(configuration))
	if err != nil {
		return nil, fmt.Errorf("unable to decode plugin_data: %s", withoutQuotedText(err.Error()))
	}
	return file, nil
}

// settingsNotes are the errors parseSettings reports, one note each, for Validate.
func settingsNotes(err error) []string {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []string{err.Error()}
	}
	var notes []string
	for _, each := range joined.Unwrap() {
		notes = append(notes, each.Error())
	}
	return notes
}

// checkSettingNames refuses the settings of the retired function key scheme, naming what
// replaced them, a secret written into the configuration, and a setting given more than once.
// Other unknown settings are ignored, as SPIRE's own plugins do.
//
// A setting's name is compared as HCL's decoder matches it to a field: unquoted, and with
// strings.EqualFold, so that "app_secret" or APP_SECRET is refused like app_secret, and
// "Server_Name", which the decoder takes for server_name, counts as server_name.
func checkSettingNames(file *ast.File, errs *settingsErrors) {
	var items []*ast.ObjectItem
	switch node := file.Node.(type) {
	case *ast.ObjectList:
		items = node.Items
	case *ast.ObjectType:
		items = node.List.Items
	}
	given := make(map[string][]token.Pos)
	reported := make(map[string]bool)
	for _, item := range items {
		if len(item.Keys) == 0 {
			continue
		}
		key := item.Keys[0].Token
		if key.Type != token.IDENT && key.Type != token.STRING {
			continue
		}
		name, _ := key.Value().(string)
		folded := foldCase(name)
		switch {
		case strings.HasPrefix(folded, foldCase(retiredFunctionKeyPrefix)):
			shown := retiredFunctionKeyPrefix + "* settings are"
			if environmentVariablePattern.MatchString(name) && len(name) <= 64 {
				shown = name + " is"
			}
			// Names that are not shown would each give the same error: it is given once.
			if !reported[shown] {
				reported[shown] = true
				errs.add(fmt.Errorf("%s no longer used: the app takes no function keys; the plugin signs in to Microsoft Entra ID instead: set credential and api_client_id", shown))
			}
		case folded == foldCase(inlineSecretSetting) && !reported[inlineSecretSetting]:
			reported[inlineSecretSetting] = true
			errs.add(fmt.Errorf("%s is refused: a secret does not belong in the configuration; set app_secret_file or app_secret_env to where it is", inlineSecretSetting))
		}
		if setting, known := knownSettings[folded]; known {
			given[setting] = append(given[setting], key.Pos)
		}
	}
	repeated := make([]string, 0, len(given))
	for setting, positions := range given {
		if len(positions) > 1 {
			repeated = append(repeated, setting)
		}
	}
	slices.Sort(repeated)
	for _, setting := range repeated {
		errs.add(repeatedSettingError(setting, given[setting]))
	}
}

func repeatedSettingError(setting string, positions []token.Pos) error {
	var at []string
	for _, position := range positions {
		if position.IsValid() {
			at = append(at, position.String())
		}
	}
	where := ""
	if len(at) == len(positions) {
		where = " (at " + strings.Join(at, ", ") + ")"
	}
	return fmt.Errorf("%s is set %d times%s, in whatever case or quotes: set it once; the decoder would silently have taken the last", setting, len(positions), where)
}

// foldCase maps each character to the smallest of those strings.EqualFold takes for it, so that
// two names are equal folded exactly when strings.EqualFold says they are.
func foldCase(name string) string {
	return strings.Map(func(r rune) rune {
		smallest := r
		for other := unicode.SimpleFold(r); other != r; other = unicode.SimpleFold(other) {
			smallest = min(smallest, other)
		}
		return smallest
	}, name)
}

// What a parser's error quotes from its input: a token with its text, keys, a port, a character.
var (
	unknownTokenText = regexp.MustCompile(`(?is)(unknown token): .*$`)
	keysText         = regexp.MustCompile(`(?s)key '.*' (expected start of object)`)
	quotedText       = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// withoutQuotedText drops from a parser's error the text it quotes from the configuration, which
// may be a secret written where it does not belong, and keeps the position and the reason.
func withoutQuotedText(message string) string {
	shortened := unknownTokenText.ReplaceAllString(message, "$1")
	shortened = keysText.ReplaceAllString(shortened, "key … $1")
	shortened = quotedText.ReplaceAllString(shortened, "…")
	if shortened == message {
		return message
	}
	return shortened + " (the text at fault is not repeated, in case it is a misplaced secret)"
}

// serverNameFault says what is wrong with a server name that does not match serverNamePattern.
func serverNameFault(name string) string {
	switch {
	case len(name) > 63:
		return "is longer than 63 characters"
	case strings.ContainsFunc(name, unicode.IsUpper):
		return "holds upper-case letters"
	case strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	}):
		return "holds a character other than lowercase letters, digits, '-', '.' and '_'"
	default:
		return "starts or ends with '-', '.' or '_'"
	}
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
// info, query or fragment. Its errors never repeat the user info or query, which may hold a secret,
// nor a value without a scheme or host, which may be a secret rather than a URL.
func parseBaseURL(setting, raw string, httpAllowed func(*url.URL) bool) (*url.URL, error) {
	parsed, err := url.Parse(raw)
	if err != nil {
		var urlError *url.Error
		if errors.As(err, &urlError) {
			err = urlError.Err // without the URL it quotes
		}
		// Without the port, character or escape it quotes, too.
		return nil, fmt.Errorf("%s is not a URL: %s", setting, withoutQuotedText(err.Error()))
	}
	shown := (&url.URL{Scheme: parsed.Scheme, Host: parsed.Host, Path: parsed.Path}).String()
	switch {
	case (parsed.Scheme == "" || parsed.Host == "") && shownHostPattern.MatchString(raw):
		return nil, fmt.Errorf("%s %q must be an absolute https URL", setting, raw)
	case parsed.Scheme == "" || parsed.Host == "":
		// "//" followed by anything parses as a host and a path: a secret could start so.
		return nil, fmt.Errorf("%s must be an absolute https URL: this value has no scheme or no host (%s)", setting, notRepeated)
	case parsed.Scheme != "https" && parsed.Scheme != "http":
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
		// time.ParseDuration's error quotes the value.
		return 0, fmt.Errorf("request_timeout is not a duration such as \"10s\": %s", withoutQuotedText(err.Error()))
	}
	if timeout <= 0 || timeout > maxRequestTimeout {
		// The value is a duration, shown as Go writes it: not a secret.
		return 0, fmt.Errorf("request_timeout %s must be more than 0 and at most %s", timeout, maxRequestTimeout)
	}
	return timeout, nil
}

// parseCredential validates the credential settings of the kind named, and reads what that kind
// takes from the environment or a file.
func parseCredential(data *pluginData, errs *settingsErrors) credentialSettings {
	kind := credentialKind(data.Credential)
	takes, known := settingsOfCredential[kind]
	switch {
	case data.Credential == "":
		errs.add(fmt.Errorf("credential is required: how to sign in to Microsoft Entra ID, one of %s", credentialKinds))
		return credentialSettings{}
	case !known && shownCredentialPattern.MatchString(data.Credential):
		errs.add(fmt.Errorf("credential %q is not one of %s", data.Credential, credentialKinds))
		return credentialSettings{}
	case !known:
		errs.add(fmt.Errorf("credential is not one of %s (%s)", credentialKinds, notRepeated))
		return credentialSettings{}
	}
	for _, name := range data.namedCredentialSettings() {
		if !slices.Contains(takes, name) {
			errs.add(fmt.Errorf("%s does not apply to credential %q, which takes only %s", name, kind, strings.Join(takes, ", ")))
		}
	}
	validateIDs(data, errs)
	credential := credentialSettings{
		kind:                     kind,
		tenantID:                 data.TenantID,
		appID:                    data.AppID,
		managedIdentityClientID:  data.ManagedIdentityClientID,
		disableInstanceDiscovery: data.DisableInstanceDiscovery,
	}
	if data.AuthorityHost != "" {
		authority, err := parseBaseURL("authority_host", data.AuthorityHost, func(*url.URL) bool { return false })
		if err == nil {
			credential.authorityHost = authority.String() + "/"
		}
		errs.add(err)
	}
	switch kind {
	case workloadIdentity:
		errs.add(credential.readWorkloadIdentityEnvironment())
	case clientSecret:
		if data.TenantID == "" {
			errs.add(fmt.Errorf("tenant_id is required with credential %q: the tenant of the app registration it signs in as", kind))
		}
		if data.AppID == "" {
			errs.add(fmt.Errorf("app_id is required with credential %q: the client id of the app registration it signs in as", kind))
		}
		var err error
		credential.appSecret, credential.appSecretSource, err = readAppSecret(data)
		errs.add(err)
	}
	return credential
}

func validateIDs(data *pluginData, errs *settingsErrors) {
	if data.TenantID != "" && !tenantIDPattern.MatchString(data.TenantID) {
		// A tenant id tenantIDPattern refuses is never one shownIDPattern would show.
		errs.add(fmt.Errorf("tenant_id is not a tenant id: a GUID, or a domain such as contoso.onmicrosoft.com; "+
			"this value holds characters neither can, or is too long (%s)", notRepeated))
	}
	errs.add(validateClientID("app_id", data.AppID))
	errs.add(validateClientID("managed_identity_client_id", data.ManagedIdentityClientID))
}

// validateClientID accepts an empty value, which the caller has dealt with, or a GUID.
func validateClientID(setting, value string) error {
	switch {
	case value == "" || guidPattern.MatchString(value):
		return nil
	case shownIDPattern.MatchString(value):
		return fmt.Errorf("%s %q is not a client id: a GUID such as 00000000-0000-0000-0000-000000000000", setting, value)
	default:
		return fmt.Errorf("%s is not a client id: a GUID such as 00000000-0000-0000-0000-000000000000; "+
			"this value is longer than a GUID or holds characters a GUID cannot (%s)", setting, notRepeated)
	}
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
// names where the secret is, never the secret itself; should it hold the secret nonetheless, the
// errors do not repeat it.
func readAppSecret(data *pluginData) (secret, source string, err error) {
	switch {
	case data.AppSecretEnv != "" && data.AppSecretFile != "":
		return "", "", fmt.Errorf("app_secret_file and app_secret_env are exclusive: set one")
	case data.AppSecretEnv != "":
		if !environmentVariablePattern.MatchString(data.AppSecretEnv) {
			return "", "", fmt.Errorf("app_secret_env is not the name of an environment variable: letters, digits and '_', not starting with a digit; "+
				"it names the variable that holds the secret, not the secret itself (%s)", notRepeated)
		}
		secret = strings.TrimSpace(os.Getenv(data.AppSecretEnv))
		if secret == "" {
			return "", "", fmt.Errorf("app_secret_env: the environment variable %q is unset or empty", data.AppSecretEnv)
		}
		return secret, "environment variable " + data.AppSecretEnv, nil
	case data.AppSecretFile != "":
		content, err := os.ReadFile(data.AppSecretFile)
		if err != nil {
			return "", "", fmt.Errorf("app_secret_file: unable to read %s: %s", secretFileShown(data.AppSecretFile), fileErrorReason(err))
		}
		secret = strings.TrimSpace(string(content))
		if secret == "" {
			return "", "", fmt.Errorf("app_secret_file: %s is empty", secretFileShown(data.AppSecretFile))
		}
		return secret, "file " + data.AppSecretFile, nil
	default:
		return "", "", fmt.Errorf("app_secret_file or app_secret_env is required with credential %q: where to read the app registration's secret", clientSecret)
	}
}

// secretFileShown names the file app_secret_file names in an error: quoted when it is an absolute
// path in an existing directory other than the root, which a secret pasted there is not; else
// without repeating it.
func secretFileShown(path string) string {
	if filepath.IsAbs(path) {
		directory := filepath.Dir(path)
		if info, err := os.Stat(directory); err == nil && info.IsDir() && directory != filepath.Dir(directory) {
			return fmt.Sprintf("%q", path)
		}
	}
	return "the file it names (not an absolute path in an existing directory: " + notRepeated + ")"
}

// fileErrorReason is why a file could not be read, without the path os.PathError repeats.
func fileErrorReason(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return errno.Error() // "no such file or directory", "permission denied", "is a directory"…
	case errors.Is(err, fs.ErrNotExist):
		return "not found"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	default:
		return "an I/O error"
	}
}
