package keymanager

import (
	"context"
	"crypto/sha256"
	"regexp"
	"testing"

	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var instanceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// callEveryRPC makes each KeyManager call once and returns the instance ids the app received.
func callEveryRPC(t *testing.T, app *fakeApp, s *served) []string {
	t.Helper()
	ctx := context.Background()
	before := len(app.recorded())
	_, err := s.km.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: "x509-CA-A", KeyType: keymanagerv1.KeyType_EC_P256})
	require.NoError(t, err)
	_, err = s.km.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	_, err = s.km.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
	require.NoError(t, err)
	digest := sha256.Sum256([]byte("data"))
	_, err = s.km.SignData(ctx, &keymanagerv1.SignDataRequest{
		KeyId: "x509-CA-A", Data: digest[:], SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	})
	require.NoError(t, err)
	var ids []string
	for _, request := range app.recorded()[before:] {
		ids = append(ids, request.header.Get("X-SPIRE-Plugin-Instance"))
	}
	return ids
}

func TestOnePluginSendsOneStableInstanceIDAndANewPluginANewOne(t *testing.T) {
	app := newFakeApp(t)
	first := serveApp(t, app, "")
	ids := append(callEveryRPC(t, app, first), callEveryRPC(t, app, first)...)
	require.Len(t, ids, 8)
	assert.Regexp(t, instanceIDPattern, ids[0])
	for _, id := range ids {
		assert.Equal(t, ids[0], id, "every call of one plugin carries the same id")
	}

	restarted := serveApp(t, app, "")
	next := callEveryRPC(t, app, restarted)
	assert.Regexp(t, instanceIDPattern, next[0])
	assert.NotEqual(t, ids[0], next[0], "a new plugin process has a new id")
	for _, id := range next {
		assert.Equal(t, next[0], id)
	}
}
