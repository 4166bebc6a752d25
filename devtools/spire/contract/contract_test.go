// Package contract runs SPIRE's KeyManager contract suite against the plugin, in-process, talking
// to a running app. The environment gives the plugin's settings (the app's URL and how to sign in
// to Entra ID), the trust domain and the server names the app lets the plugin's identity act as;
// without them the test fails.
package contract

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"

	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire/pkg/common/catalog"
	"github.com/spiffe/spire/pkg/server/plugin/keymanager"
	keymanagertest "github.com/spiffe/spire/pkg/server/plugin/keymanager/test"
	"github.com/spiffe/spire/test/plugintest"

	plugin "azure-kv-keymanager/spire-plugin/keymanager"
)

func TestKeyManagerContract(t *testing.T) {
	pluginData := requireEnv(t, "CONTRACT_PLUGIN_DATA")
	trustDomain := spiffeid.RequireTrustDomainFromString(requireEnv(t, "CONTRACT_TRUST_DOMAIN"))
	serverNames := strings.Fields(requireEnv(t, "CONTRACT_SERVER_NAMES"))

	// Each case gets a server of its own on the app, hence keys of its own: the next unused name.
	create := func(t *testing.T) keymanager.KeyManager {
		if len(serverNames) == 0 {
			t.Fatal("CONTRACT_SERVER_NAMES has fewer names than the suite has cases: give the test identity more")
		}
		serverName := serverNames[0]
		serverNames = serverNames[1:]
		p := plugin.New()
		km := new(keymanager.V1)
		plugintest.Load(t, catalog.MakeBuiltIn("azure_kv_keymanager", keymanagerv1.KeyManagerPluginServer(p), configv1.ConfigServiceServer(p)), km,
			plugintest.CoreConfig(catalog.CoreConfig{TrustDomain: trustDomain}),
			plugintest.Configure(fmt.Sprintf("%s\nserver_name = %q\n", pluginData, serverName)))
		return km
	}

	// Key Vault signs ES256 only with P-256 and ES384 only with P-384, as SPIRE's azure_key_vault
	// contract test also excludes.
	keymanagertest.Test(t, keymanagertest.Config{
		Create: create,
		UnsupportedSignatureAlgorithms: map[keymanager.KeyType][]x509.SignatureAlgorithm{
			keymanager.ECP256: {x509.ECDSAWithSHA384, x509.ECDSAWithSHA512},
			keymanager.ECP384: {x509.ECDSAWithSHA256, x509.ECDSAWithSHA512},
		},
	})
}

func requireEnv(t *testing.T, name string) string {
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: run this suite through tests/integration/test_spire_contract.py, which starts the app", name)
	}
	return value
}
