package keymanager

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
)

const (
	defaultRequestTimeout = 10 * time.Second
	// SPIRE gives each KeyManager call 30 s; a longer attempt could never finish inside it.
	maxRequestTimeout = 30 * time.Second
)

// The app's rule for server names: they become part of blob paths and Key Vault key names.
var serverNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// pluginData is the plugin_data block of the server's configuration.
type pluginData struct {
	AppURL          string `hcl:"app_url"`
	FunctionKeyEnv  string `hcl:"function_key_env"`
	FunctionKeyFile string `hcl:"function_key_file"`
	ServerName      string `hcl:"server_name"`
	RequestTimeout  string `hcl:"request_timeout"`
}

// settings are the validated configuration the plugin works with.
type settings struct {
	appURL         *url.URL
	functionKey    string // empty: no key is sent (an app on this host that needs none)
	keySource      string // where the key was read from, for the log; never the key
	serverName     string // empty: the app's default server
	trustDomain    string
	requestTimeout time.Duration
}

// parseSettings decodes and validates plugin_data; every error names the setting at fault.
func parseSettings(hclConfiguration, trustDomain string) (*settings, error) {
	var data pluginData
	if err := hcl.Decode(&data, hclConfiguration); err != nil {
		return nil, fmt.Errorf("unable to decode plugin_data: %w", err)
	}
	if trustDomain == "" {
		return nil, fmt.Errorf("the server's trust domain is missing from the core configuration")
	}
	appURL, err := parseAppURL(data.AppURL)
	if err != nil {
		return nil, err
	}
	functionKey, keySource, err := readFunctionKey(data, isLoopback(appURL))
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
	return &settings{
		appURL:         appURL,
		functionKey:    functionKey,
		keySource:      keySource,
		serverName:     data.ServerName,
		trustDomain:    trustDomain,
		requestTimeout: timeout,
	}, nil
}

// parseAppURL accepts the app's base URL: HTTPS, or HTTP to a loopback address (the local stack),
// since the function key travels in a header.
func parseAppURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("app_url is required: the app's base URL, e.g. https://<app>.azurewebsites.net")
	}
	appURL, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("app_url %q is not a URL: %w", raw, err)
	}
	switch {
	case appURL.Host == "" || (appURL.Scheme != "https" && appURL.Scheme != "http"):
		return nil, fmt.Errorf("app_url %q must be an absolute http(s) URL", raw)
	case appURL.User != nil || appURL.RawQuery != "" || appURL.Fragment != "":
		return nil, fmt.Errorf("app_url %q must not hold credentials, a query or a fragment", raw)
	case appURL.Scheme == "http" && !isLoopback(appURL):
		return nil, fmt.Errorf("app_url %q must use https: only a loopback address may use http", raw)
	}
	appURL.Path = strings.TrimSuffix(appURL.Path, "/")
	return appURL, nil
}

func isLoopback(appURL *url.URL) bool {
	host := appURL.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readFunctionKey reads the key from the named environment variable or file. The configuration
// names where the key is, never the key itself. Only an app on this host may go without one.
func readFunctionKey(data pluginData, loopback bool) (key, source string, err error) {
	switch {
	case data.FunctionKeyEnv != "" && data.FunctionKeyFile != "":
		return "", "", fmt.Errorf("function_key_env and function_key_file are exclusive: set one")
	case data.FunctionKeyEnv != "":
		key = strings.TrimSpace(os.Getenv(data.FunctionKeyEnv))
		if key == "" {
			return "", "", fmt.Errorf("function_key_env: the environment variable %q is unset or empty", data.FunctionKeyEnv)
		}
		return key, "environment variable " + data.FunctionKeyEnv, nil
	case data.FunctionKeyFile != "":
		content, err := os.ReadFile(data.FunctionKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("function_key_file: unable to read %q: %w", data.FunctionKeyFile, err)
		}
		key = strings.TrimSpace(string(content))
		if key == "" {
			return "", "", fmt.Errorf("function_key_file: %q is empty", data.FunctionKeyFile)
		}
		return key, "file " + data.FunctionKeyFile, nil
	case !loopback:
		return "", "", fmt.Errorf("function_key_env or function_key_file is required: the app's function key (a host key)")
	default:
		return "", "none", nil
	}
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
