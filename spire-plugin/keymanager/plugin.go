// Package keymanager is a SPIRE server KeyManager plugin that keeps SPIRE's keys in Azure Key Vault
// through the azure-kv-keymanager app: each RPC is one call of the app's HTTP API.
package keymanager

import (
	"context"
	"net/http"
	"net/url"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var _ pluginsdk.NeedsLogger = (*Plugin)(nil)

// Plugin implements SPIRE's KeyManager and Config services.
type Plugin struct {
	keymanagerv1.UnsafeKeyManagerServer
	configv1.UnsafeConfigServer

	logger        hclog.Logger
	backoff       backoff
	newCredential newCredentialFunc

	// Replaced whole by each Configure, as the SDK's template replaces its configuration, so that
	// nothing of a previous configuration, its pins included, outlives it.
	mu     sync.RWMutex
	config *configuration
}

// configuration is what one Configure builds: the client of the app it names, and the keys
// pinned while it is in force.
type configuration struct {
	client *appClient

	mu sync.RWMutex
	// The fingerprint of the key each key id last had here; SignData sends it so that a key
	// rotated behind SPIRE's back fails rather than signs with a key SPIRE does not hold.
	fingerprints map[string]string
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{
		logger:        hclog.NewNullLogger(),
		backoff:       defaultBackoff,
		newCredential: newAzureCredential,
	}
}

// SetLogger receives the logger that writes into SPIRE's log.
func (p *Plugin) SetLogger(logger hclog.Logger) {
	p.logger = logger
}

// Configure validates plugin_data, takes the trust domain from SPIRE's core configuration, and
// signs in to Microsoft Entra ID once, so that a credential that cannot sign in stops the server
// at start with the reason rather than failing its first KeyManager call.
func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	settings, err := parseSettings(req.HclConfiguration, req.GetCoreConfiguration().GetTrustDomain())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	credential, err := p.signIn(ctx, settings)
	if err != nil {
		return nil, err
	}
	config := &configuration{
		client:       &appClient{settings: settings, credential: credential, http: newHTTPClient(), logger: p.logger, backoff: p.backoff},
		fingerprints: make(map[string]string),
	}
	p.mu.Lock()
	p.config = config
	p.mu.Unlock()
	p.logger.Info("Configured", "app_url", settings.appURL.String(), "server_name", settings.serverName,
		"trust_domain", settings.trustDomain, "request_timeout", settings.requestTimeout.String())
	return &configv1.ConfigureResponse{}, nil
}

// signIn builds the credential and gets one token with it, within request_timeout, to log who
// the plugin is to the app: the object id the app's SPIRE_SERVER_IDENTITIES must name.
func (p *Plugin) signIn(ctx context.Context, s *settings) (azcore.TokenCredential, error) {
	kind := s.credential.kind
	credential, err := p.newCredential(s)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "credential %q cannot be set up: %s", kind, oneLine(err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	accessToken, err := getToken(ctx, credential, s)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "unable to sign in to Microsoft Entra ID: %v", err)
	}
	fields := []any{"credential", string(kind), "scope", s.tokenScope}
	if source := s.credential.appSecretSource; source != "" {
		fields = append(fields, "app_secret_from", source)
	}
	identity, err := readTokenIdentity(accessToken)
	if err != nil {
		p.logger.Warn("Signed in to Entra ID, but the access token does not say who as", append(fields, "reason", err.Error())...)
		return credential, nil
	}
	p.logger.Info("Signed in to Entra ID", append(fields,
		"tenant_id", identity.TenantID, "object_id", identity.ObjectID, "client_id", identity.clientID())...)
	return credential, nil
}

// Validate checks a configuration without applying it (spire-server validate).
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	if _, err := parseSettings(req.HclConfiguration, req.GetCoreConfiguration().GetTrustDomain()); err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: settingsNotes(err)}, nil
	}
	return &configv1.ValidateResponse{Valid: true}, nil
}

// publicKeyJSON is the app's public key object.
type publicKeyJSON struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	PKIXData    []byte `json:"pkix_data"` // encoding/json reads and writes []byte as standard base64
	Fingerprint string `json:"fingerprint"`
}

type publicKeyResponse struct {
	PublicKey *publicKeyJSON `json:"public_key"`
}

// GenerateKey creates the key id's key, or rotates it to a new one.
func (p *Plugin) GenerateKey(ctx context.Context, req *keymanagerv1.GenerateKeyRequest) (*keymanagerv1.GenerateKeyResponse, error) {
	keyType, ok := keyTypeNames[req.KeyType]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "key type is required: one of EC_P256, EC_P384, RSA_2048, RSA_4096, not %s", req.KeyType)
	}
	// A retried create that had reached Key Vault could make a second key current after SPIRE took
	// the first; on such a failure SPIRE prepares the slot again itself.
	publicKey, err := p.callForPublicKey(ctx, req.KeyId, retryOnlyUnsent, http.MethodPost, "", map[string]string{"key_id": req.KeyId, "key_type": keyType})
	if err != nil {
		return nil, err
	}
	return &keymanagerv1.GenerateKeyResponse{PublicKey: publicKey}, nil
}

// GetPublicKey answers NotFound for a key id without a key, as SPIRE's contract expects.
func (p *Plugin) GetPublicKey(ctx context.Context, req *keymanagerv1.GetPublicKeyRequest) (*keymanagerv1.GetPublicKeyResponse, error) {
	publicKey, err := p.callForPublicKey(ctx, req.KeyId, retryWhatMayHelp, http.MethodGet, "/"+url.PathEscape(req.KeyId), nil)
	if err != nil {
		return nil, err
	}
	return &keymanagerv1.GetPublicKeyResponse{PublicKey: publicKey}, nil
}

// callForPublicKey sends a call the app answers with one key id's public key, a create (GenerateKey)
// or a read (GetPublicKey), and pins the key it answers with.
func (p *Plugin) callForPublicKey(ctx context.Context, keyID string, rule retryRule, method, subPath string, body any) (*keymanagerv1.PublicKey, error) {
	if keyID == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	config, err := p.configuration()
	if err != nil {
		return nil, err
	}
	var response publicKeyResponse
	if err := config.client.call(ctx, rule, method, "/api/keys"+subPath, body, &response); err != nil {
		return nil, err
	}
	if response.PublicKey == nil || response.PublicKey.ID != keyID {
		return nil, status.Errorf(codes.Internal, "the app answered for key %q without its public key", keyID)
	}
	return config.remember(response.PublicKey)
}

// GetPublicKeys lists this server's keys.
func (p *Plugin) GetPublicKeys(ctx context.Context, _ *keymanagerv1.GetPublicKeysRequest) (*keymanagerv1.GetPublicKeysResponse, error) {
	config, err := p.configuration()
	if err != nil {
		return nil, err
	}
	var response struct {
		PublicKeys []*publicKeyJSON `json:"public_keys"`
	}
	if err := config.client.call(ctx, retryWhatMayHelp, http.MethodGet, "/api/keys", nil, &response); err != nil {
		return nil, err
	}
	publicKeys := make([]*keymanagerv1.PublicKey, 0, len(response.PublicKeys))
	for _, key := range response.PublicKeys {
		publicKey, err := config.remember(key)
		if err != nil {
			return nil, err
		}
		publicKeys = append(publicKeys, publicKey)
	}
	return &keymanagerv1.GetPublicKeysResponse{PublicKeys: publicKeys}, nil
}

// SignData has the key id's current key sign a digest, on condition that it is still the key this
// plugin last returned for that key id.
func (p *Plugin) SignData(ctx context.Context, req *keymanagerv1.SignDataRequest) (*keymanagerv1.SignDataResponse, error) {
	if req.KeyId == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	body, err := signRequestBody(req)
	if err != nil {
		return nil, err
	}
	config, err := p.configuration()
	if err != nil {
		return nil, err
	}
	body.KeyFingerprint = config.pinned(req.KeyId)
	var response struct {
		Signature      []byte `json:"signature"`
		KeyFingerprint string `json:"key_fingerprint"`
	}
	if err := config.client.call(ctx, retryThrottledOnce, http.MethodPost, "/api/keys/"+url.PathEscape(req.KeyId)+"/sign", body, &response); err != nil {
		return nil, err
	}
	if len(response.Signature) == 0 {
		return nil, status.Errorf(codes.Internal, "the app answered for key %q without a signature", req.KeyId)
	}
	if body.KeyFingerprint != "" && response.KeyFingerprint != body.KeyFingerprint {
		return nil, status.Errorf(codes.FailedPrecondition, "the app signed for key %q with the key of fingerprint %q, not %q, the one this server holds",
			req.KeyId, response.KeyFingerprint, body.KeyFingerprint)
	}
	return &keymanagerv1.SignDataResponse{Signature: response.Signature, KeyFingerprint: response.KeyFingerprint}, nil
}

type signBody struct {
	Data           []byte      `json:"data"`
	HashAlgorithm  string      `json:"hash_algorithm,omitempty"`
	PSSOptions     *pssOptions `json:"pss_options,omitempty"`
	KeyFingerprint string      `json:"key_fingerprint,omitempty"`
}

type pssOptions struct {
	HashAlgorithm string `json:"hash_algorithm"`
	SaltLength    int32  `json:"salt_length"`
}

func signRequestBody(req *keymanagerv1.SignDataRequest) (*signBody, error) {
	body := &signBody{Data: req.Data}
	var hash keymanagerv1.HashAlgorithm
	switch opts := req.SignerOpts.(type) {
	case *keymanagerv1.SignDataRequest_HashAlgorithm:
		hash = opts.HashAlgorithm
	case *keymanagerv1.SignDataRequest_PssOptions:
		if opts.PssOptions == nil {
			return nil, status.Error(codes.InvalidArgument, "PSS options are required")
		}
		hash = opts.PssOptions.HashAlgorithm
		body.PSSOptions = &pssOptions{SaltLength: opts.PssOptions.SaltLength}
	default:
		return nil, status.Error(codes.InvalidArgument, "signer opts are required")
	}
	name, ok := hashAlgorithmNames[hash]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "hash algorithm %s is not supported: SHA256, SHA384 or SHA512", hash)
	}
	if body.PSSOptions != nil {
		body.PSSOptions.HashAlgorithm = name
	} else {
		body.HashAlgorithm = name
	}
	return body, nil
}

var keyTypeNames = map[keymanagerv1.KeyType]string{
	keymanagerv1.KeyType_EC_P256:  "ec-p256",
	keymanagerv1.KeyType_EC_P384:  "ec-p384",
	keymanagerv1.KeyType_RSA_2048: "rsa-2048",
	keymanagerv1.KeyType_RSA_4096: "rsa-4096",
}

var hashAlgorithmNames = map[keymanagerv1.HashAlgorithm]string{
	keymanagerv1.HashAlgorithm_SHA256: "SHA256",
	keymanagerv1.HashAlgorithm_SHA384: "SHA384",
	keymanagerv1.HashAlgorithm_SHA512: "SHA512",
}

var keyTypesByName = func() map[string]keymanagerv1.KeyType {
	byName := make(map[string]keymanagerv1.KeyType, len(keyTypeNames))
	for keyType, name := range keyTypeNames {
		byName[name] = keyType
	}
	return byName
}()

// remember converts the app's public key and pins its fingerprint for SignData.
func (c *configuration) remember(key *publicKeyJSON) (*keymanagerv1.PublicKey, error) {
	if key == nil {
		return nil, status.Error(codes.Internal, "the app answered with an empty public key")
	}
	keyType, ok := keyTypesByName[key.Type]
	if !ok || key.ID == "" || len(key.PKIXData) == 0 || key.Fingerprint == "" {
		return nil, status.Errorf(codes.Internal, "the app answered with an incomplete public key for key %q", key.ID)
	}
	c.mu.Lock()
	c.fingerprints[key.ID] = key.Fingerprint
	c.mu.Unlock()
	return &keymanagerv1.PublicKey{Id: key.ID, Type: keyType, PkixData: key.PKIXData, Fingerprint: key.Fingerprint}, nil
}

// pinned is the fingerprint of the key the key id last had under this configuration, or "".
func (c *configuration) pinned(keyID string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fingerprints[keyID]
}

// configuration is the one in force: a call keeps the one it started with, so that a Configure
// during the call cannot pin the previous app's key in the new configuration.
func (p *Plugin) configuration() (*configuration, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.config == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	return p.config, nil
}
