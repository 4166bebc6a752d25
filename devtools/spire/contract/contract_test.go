// Package contract runs SPIRE's KeyManager contract suite against the plugin, in-process, talking
// to a running app. The app's URL and trust domain come from the environment; without them the
// test fails.
package contract

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"os"
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
	appURL := requireEnv(t, "CONTRACT_APP_URL")
	trustDomain := spiffeid.RequireTrustDomainFromString(requireEnv(t, "CONTRACT_TRUST_DOMAIN"))

	// Each case gets a server of its own on the app, hence keys of its own.
	create := func(t *testing.T) keymanager.KeyManager {
		p := plugin.New()
		km := new(keymanager.V1)
		plugintest.Load(t, catalog.MakeBuiltIn("azure_kv_keymanager", keymanagerv1.KeyManagerPluginServer(p), configv1.ConfigServiceServer(p)), km,
			plugintest.CoreConfig(catalog.CoreConfig{TrustDomain: trustDomain}),
			plugintest.Configuref("app_url = %q\nserver_name = %q\n", appURL, freshServerName(t)))
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

func freshServerName(t *testing.T) string {
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	return "contract-" + hex.EncodeToString(suffix)
}
