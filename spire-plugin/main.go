// Command azure-kv-keymanager is the SPIRE server KeyManager plugin binary.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"azure-kv-keymanager/spire-plugin/keymanager"
)

func main() {
	plugin := keymanager.New()
	pluginmain.Serve(keymanagerv1.KeyManagerPluginServer(plugin), configv1.ConfigServiceServer(plugin))
}
