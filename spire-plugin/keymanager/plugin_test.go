package keymanager

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	trustDomain = "example.org"
	apiClientID = "0f6a4b1c-2d3e-4f50-8a9b-0c1d2e3f4a5b"
	tokenScope  = "api://" + apiClientID + "/.default"
	// Who the fake credential's tokens say the plugin is.
	signedInTenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	signedInObjectID = "5e0c8d7a-1b2c-4d3e-9f40-a1b2c3d4e5f6"
	signedInClientID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
)

// served is the plugin behind SPIRE's gRPC plugin transport, as spire-server calls it.
type served struct {
	km         keymanagerv1.KeyManagerPluginClient
	config     configv1.ConfigServiceClient
	log        *syncBuffer
	credential *fakeCredential
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serve serves the plugin with a fake credential in place of azidentity's.
func serve(t *testing.T) *served {
	t.Helper()
	credential := &fakeCredential{}
	s := serveWithCredential(t, func(built *settings) (azcore.TokenCredential, error) {
		credential.record(built)
		return credential, nil
	})
	s.credential = credential
	return s
}

func serveWithCredential(t *testing.T, newCredential newCredentialFunc) *served {
	t.Helper()
	plugin := New()
	plugin.backoff = backoff{base: time.Millisecond, max: 5 * time.Millisecond}
	plugin.newCredential = newCredential
	s := &served{log: new(syncBuffer)}
	kmClient := new(keymanagerv1.KeyManagerPluginClient)
	configClient := new(configv1.ConfigServiceClient)
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   keymanagerv1.KeyManagerPluginServer(plugin),
		PluginClient:   kmClient,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(plugin)},
		ServiceClients: []pluginsdk.ServiceClient{configClient},
		Logger:         hclog.New(&hclog.LoggerOptions{Output: s.log, Level: hclog.Trace}),
	})
	s.km, s.config = *kmClient, *configClient
	return s
}

func (s *served) configure(t *testing.T, hclConfig string) error {
	t.Helper()
	_, err := s.config.Configure(context.Background(), &configv1.ConfigureRequest{
		HclConfiguration:  hclConfig,
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
	})
	return err
}

// pluginConfig is a complete plugin_data for the app at appURL, signing in with a managed identity.
func pluginConfig(appURL string) string {
	return `app_url = "` + appURL + `"
api_client_id = "` + apiClientID + `"
credential = "managed_identity"
`
}

// serveApp serves handler as the app and the plugin configured against it.
func serveApp(t *testing.T, handler http.Handler, extra string) *served {
	t.Helper()
	return serveConfigured(t, newFakeServer(t, handler), extra)
}

func newFakeServer(t *testing.T, handler http.Handler) *httptest.Server {
	server := httptest.NewServer(handler)
	t.Cleanup(server.Close)
	return server
}

// getKeyWithin asks for a key with a deadline, as SPIRE does for every call.
func getKeyWithin(s *served, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := s.km.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	return err
}

// serveConfigured serves the plugin configured against app as server spire-1.
func serveConfigured(t *testing.T, app *httptest.Server, extra string) *served {
	t.Helper()
	s := serve(t)
	require.NoError(t, s.configure(t, pluginConfig(app.URL)+`server_name = "spire-1"
`+extra))
	return s
}

func TestConfigureRejectsInvalidSettings(t *testing.T) {
	for _, tt := range []struct {
		name, config, message string
	}{
		{"not HCL", `app_url "unterminated`, "unable to decode plugin_data"},
		{"no app url", `server_name = "a"`, "app_url is required"},
		{"no api client id", `app_url = "https://app.example.net"
credential = "managed_identity"`, "api_client_id is required: the client id of the app's API application in Microsoft Entra ID"},
		{"api client id not a GUID", `app_url = "https://app.example.net"
api_client_id = "api://keymanager"
credential = "managed_identity"`, `api_client_id "api://keymanager" is not a client id`},
		{"relative url", pluginConfig("/api"), "must be an absolute https URL"},
		{"other scheme", pluginConfig("ftp://example.net"), "must be an absolute https URL"},
		{"http to a remote host", pluginConfig("http://app.example.net"), "must use https"},
		{"user info in the url", pluginConfig("https://user:pw@app.example.net"), `app_url "https://app.example.net" must not hold user info`},
		{"server name with capitals", pluginConfig("http://127.0.0.1:1") + `server_name = "Spire-1"`, `server_name is invalid: 1 to 63 lowercase letters, digits, '-', '.' or '_', starting and ending with a letter or digit; this value holds upper-case letters`},
		{"server name ending with a dash", pluginConfig("http://127.0.0.1:1") + `server_name = "spire-"`, "this value starts or ends with '-', '.' or '_'"},
		{"server name too long", pluginConfig("http://127.0.0.1:1") + `server_name = "` + string(bytes.Repeat([]byte("a"), 64)) + `"`, "this value is longer than 63 characters"},
		{"timeout not a duration", pluginConfig("http://127.0.0.1:1") + `request_timeout = "10"`, `request_timeout is not a duration such as "10s": time: missing unit in duration …`},
		{"timeout too long", pluginConfig("http://127.0.0.1:1") + `request_timeout = "31s"`, "request_timeout 31s must be more than 0 and at most 30s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t)
			err := s.configure(t, tt.config)
			assertStatus(t, err, codes.InvalidArgument, tt.message)
		})
	}
}

func TestConfigureNeedsTheTrustDomain(t *testing.T) {
	s := serve(t)
	_, err := s.config.Configure(context.Background(), &configv1.ConfigureRequest{HclConfiguration: pluginConfig("http://127.0.0.1:1")})
	assertStatus(t, err, codes.InvalidArgument, "trust domain is missing")
}

func TestValidateReportsTheProblemAndDoesNotSignIn(t *testing.T) {
	s := serve(t)
	validate := func(hclConfig string) *configv1.ValidateResponse {
		response, err := s.config.Validate(context.Background(), &configv1.ValidateRequest{
			HclConfiguration: hclConfig, CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
		})
		require.NoError(t, err)
		return response
	}
	invalid := validate(`app_url = "https://app.example.net"`)
	assert.False(t, invalid.Valid)
	assert.Contains(t, invalid.Notes[0], "api_client_id is required")

	assert.True(t, validate(pluginConfig("https://app.example.net")).Valid)
	assert.Zero(t, s.credential.callCount(), "Validate signed in")
	assert.Nil(t, s.credential.builtWith(), "Validate built a credential")
}

func TestCallsBeforeConfigureFail(t *testing.T) {
	s := serve(t)
	_, err := s.km.GetPublicKeys(context.Background(), &keymanagerv1.GetPublicKeysRequest{})
	assertStatus(t, err, codes.FailedPrecondition, "not configured")
}

// fakeApp answers like the app for one EC key, and records what it was sent.
type fakeApp struct {
	mu       sync.Mutex
	requests []recordedRequest
	key      *ecdsa.PrivateKey
	pkix     []byte
}

type recordedRequest struct {
	method, path string
	header       http.Header
	body         map[string]any
}

func newFakeApp(t *testing.T) *fakeApp {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pkix, err := x509.MarshalPKIXPublicKey(key.Public())
	require.NoError(t, err)
	return &fakeApp{key: key, pkix: pkix}
}

func (a *fakeApp) fingerprint() string {
	sum := sha256.Sum256(a.pkix)
	return hex.EncodeToString(sum[:])
}

func (a *fakeApp) publicKey(id string) map[string]any {
	return map[string]any{"id": id, "type": "ec-p256", "pkix_data": a.pkix, "fingerprint": a.fingerprint()}
}

func (a *fakeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	a.mu.Lock()
	a.requests = append(a.requests, recordedRequest{r.Method, r.URL.Path, r.Header.Clone(), body})
	a.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/keys":
		writeJSON(w, http.StatusOK, map[string]any{"public_key": a.publicKey(body["key_id"].(string))})
	case r.Method == http.MethodGet && r.URL.Path == "/api/keys":
		writeJSON(w, http.StatusOK, map[string]any{"public_keys": []any{a.publicKey("x509-CA-A"), a.publicKey("JWT-Signer-A")}})
	case r.Method == http.MethodGet && r.URL.Path == "/api/keys/x509-CA-A":
		writeJSON(w, http.StatusOK, map[string]any{"public_key": a.publicKey("x509-CA-A")})
	case r.Method == http.MethodPost && r.URL.Path == "/api/keys/x509-CA-A/sign":
		digest, _ := base64Decode(body["data"].(string))
		signature, _ := ecdsa.SignASN1(rand.Reader, a.key, digest)
		writeJSON(w, http.StatusOK, map[string]any{"signature": signature, "key_fingerprint": a.fingerprint()})
	default:
		writeJSON(w, http.StatusNotFound, apiError("NotFound", `key "missing" not found`))
	}
}

func (a *fakeApp) recorded() []recordedRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]recordedRequest(nil), a.requests...)
}

func writeJSON(w http.ResponseWriter, statusCode int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusCode)
	_ = json.NewEncoder(w).Encode(body)
}

func apiError(code, message string) map[string]any {
	return map[string]any{"error": map[string]any{"code": code, "message": message}}
}

func TestRPCsMapToTheAPI(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, app, "")
	ctx := context.Background()

	generated, err := s.km.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: "x509-CA-A", KeyType: keymanagerv1.KeyType_EC_P256})
	require.NoError(t, err)
	assert.Equal(t, &keymanagerv1.PublicKey{Id: "x509-CA-A", Type: keymanagerv1.KeyType_EC_P256, PkixData: app.pkix, Fingerprint: app.fingerprint()}, stripProto(generated.PublicKey))

	got, err := s.km.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	assert.Equal(t, app.fingerprint(), got.PublicKey.Fingerprint)

	listed, err := s.km.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
	require.NoError(t, err)
	assert.Len(t, listed.PublicKeys, 2)

	digest := sha256.Sum256([]byte("data"))
	signed, err := s.km.SignData(ctx, &keymanagerv1.SignDataRequest{
		KeyId: "x509-CA-A", Data: digest[:], SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	})
	require.NoError(t, err)
	assert.True(t, ecdsa.VerifyASN1(&app.key.PublicKey, digest[:], signed.Signature))
	assert.Equal(t, app.fingerprint(), signed.KeyFingerprint)

	requests := app.recorded()
	require.Len(t, requests, 4)
	assert.Equal(t, map[string]any{"key_id": "x509-CA-A", "key_type": "ec-p256"}, requests[0].body)
	assert.Equal(t, map[string]any{
		"data": base64Encode(digest[:]), "hash_algorithm": "SHA256", "key_fingerprint": app.fingerprint(),
	}, requests[3].body, "SignData sends the fingerprint it last returned for the key id")
	assert.Equal(t, 5, s.credential.callCount())
	for _, scopes := range s.credential.requestedScopes() {
		assert.Equal(t, []string{tokenScope}, scopes)
	}
	for i, request := range requests {
		// Call 1 was the sign-in at Configure; each request asked the credential again.
		assert.Equal(t, "Bearer "+fakeToken(i+2), request.header.Get("Authorization"), "request %d", i)
		assert.Equal(t, "spire-1", request.header.Get("X-SPIRE-Server-Name"))
		assert.Equal(t, trustDomain, request.header.Get("X-SPIRE-Trust-Domain"))
	}
}

func TestSignDataSendsPSSOptionsAndNoFingerprintForAnUnknownKey(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, app, "")
	digest := make([]byte, 48)
	_, err := s.km.SignData(context.Background(), &keymanagerv1.SignDataRequest{
		KeyId: "JWT-Signer-B", Data: digest,
		SignerOpts: &keymanagerv1.SignDataRequest_PssOptions{PssOptions: &keymanagerv1.SignDataRequest_PSSOptions{
			HashAlgorithm: keymanagerv1.HashAlgorithm_SHA384, SaltLength: -1,
		}},
	})
	assertStatus(t, err, codes.NotFound, `key "missing" not found`)
	assert.Equal(t, map[string]any{
		"data": base64Encode(digest), "pss_options": map[string]any{"hash_algorithm": "SHA384", "salt_length": float64(-1)},
	}, app.recorded()[0].body)
}

func TestSignDataRefusesASignatureByAnotherKeyThanThePinnedOne(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/sign") {
			writeJSON(w, http.StatusOK, map[string]any{"signature": []byte("signature"), "key_fingerprint": "another-key"})
			return
		}
		app.ServeHTTP(w, r)
	}), "")
	ctx := context.Background()
	_, err := s.km.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	digest := sha256.Sum256([]byte("data"))
	_, err = s.km.SignData(ctx, &keymanagerv1.SignDataRequest{
		KeyId: "x509-CA-A", Data: digest[:], SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	})
	assertStatus(t, err, codes.FailedPrecondition, `with the key of fingerprint "another-key", not "`+app.fingerprint()+`"`)
}

func TestReconfiguringDropsThePinsOfThePreviousConfiguration(t *testing.T) {
	first, second := newFakeApp(t), newFakeApp(t)
	s := serveConfigured(t, newFakeServer(t, first), "")
	ctx := context.Background()
	_, err := s.km.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)

	require.NoError(t, s.configure(t, pluginConfig(newFakeServer(t, second).URL)))
	digest := sha256.Sum256([]byte("data"))
	_, err = s.km.SignData(ctx, &keymanagerv1.SignDataRequest{
		KeyId: "x509-CA-A", Data: digest[:], SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	})
	require.NoError(t, err, "the key pinned under the previous configuration was held against the new one")
	assert.NotContains(t, second.recorded()[0].body, "key_fingerprint")
}

func TestRequestsTheAppCannotServeAreRefusedHere(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, app, "")
	ctx := context.Background()
	_, err := s.km.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{})
	assertStatus(t, err, codes.InvalidArgument, "key id is required")
	_, err = s.km.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: "a"})
	assertStatus(t, err, codes.InvalidArgument, "key type is required")
	_, err = s.km.SignData(ctx, &keymanagerv1.SignDataRequest{
		KeyId: "a", Data: []byte("x"), SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA3_256},
	})
	assertStatus(t, err, codes.InvalidArgument, "hash algorithm SHA3_256 is not supported")
	assert.Empty(t, app.recorded())
}

func TestErrorsMapToGRPCCodes(t *testing.T) {
	for _, tt := range []struct {
		name       string
		statusCode int
		body       string
		code       codes.Code
		message    string
	}{
		{"app NotFound, message unchanged", 404, `{"error": {"code": "NotFound", "message": "key \"nope\" not found"}}`, codes.NotFound, `key "nope" not found`},
		{"app InvalidArgument", 400, `{"error": {"code": "InvalidArgument", "message": "bad digest"}}`, codes.InvalidArgument, "bad digest"},
		{"app FailedPrecondition", 409, `{"error": {"code": "FailedPrecondition", "message": "rotated"}}`, codes.FailedPrecondition, "rotated"},
		{"app Internal", 500, `{"error": {"code": "Internal", "message": "internal error"}}`, codes.Internal, "internal error"},
		{"a 404 without the app's error is not a missing key", 404, `<html>Not Found</html>`, codes.Internal, "HTTP 404 Not Found without an API error: check app_url"},
		{"a bare 401", 401, ``, codes.Unauthenticated, "the access token was refused (HTTP 401 Unauthorized): check api_client_id and credential"},
		{"a bare 403", 403, `Forbidden`, codes.PermissionDenied,
			`(HTTP 403 Forbidden): check api_client_id and credential, and that the app's SPIRE_SERVER_IDENTITIES lets this identity act as server "spire-1"`},
		{"gateway error", 502, `bad gateway`, codes.Unavailable, "HTTP 502"},
		{"unknown code name", 400, `{"error": {"code": "Bogus", "message": "m"}}`, codes.Internal, "HTTP 400"},
		{"NotFound from a gateway's 502 is not a missing key", 502, `{"error": {"code": "NotFound", "message": "no route"}}`, codes.Unavailable, "HTTP 502"},
		{"NotFound with a 400 is not a missing key", 400, `{"error": {"code": "NotFound", "message": "m"}}`, codes.Internal, "HTTP 400"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.statusCode)
				_, _ = io.WriteString(w, tt.body)
			}), "")
			_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "nope"})
			assertStatus(t, err, tt.code, tt.message)
		})
	}
}

func TestARedirectIsNotFollowedSoTheTokenGoesOnlyToTheApp(t *testing.T) {
	for _, statusCode := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(statusCode), func(t *testing.T) {
			elsewhere := newFakeApp(t)
			target := httptest.NewServer(elsewhere)
			defer target.Close()
			s := serveApp(t, http.RedirectHandler(target.URL+"/api/keys/x509-CA-A", statusCode), "")
			_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
			assertStatus(t, err, codes.Internal, "a redirect, which is not followed so that the access token goes only to app_url: check app_url")
			assert.Empty(t, elsewhere.recorded(), "the redirect's target, on the app's host, was sent a request, with the token")
		})
	}
}

func TestNotFoundMessageIsTheAppsExactly(t *testing.T) {
	s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError("NotFound", `key "nope" not found`))
	}), "")
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "nope"})
	assert.Equal(t, `key "nope" not found`, status.Convert(err).Message(), "SPIRE's contract compares the whole message")
}

// flakyApp fails its first `failures` requests with `fail`, then serves the fake app.
func flakyApp(app *fakeApp, failures int32, fail http.HandlerFunc) (http.Handler, *atomic.Int32) {
	var count atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) <= failures {
			fail(w, r)
			return
		}
		app.ServeHTTP(w, r)
	}), &count
}

func TestThrottlingAndUnavailabilityAreRetried(t *testing.T) {
	for _, statusCode := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(statusCode), func(t *testing.T) {
			handler, count := flakyApp(newFakeApp(t), 3, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "0")
				writeJSON(w, statusCode, apiError("Unavailable", "Key Vault does not answer"))
			})
			s := serveApp(t, handler, "")
			_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
			require.NoError(t, err)
			assert.Equal(t, int32(4), count.Load())
			assert.Contains(t, s.log.String(), "retrying")
		})
	}
}

func TestOtherErrorsAreNotRetried(t *testing.T) {
	handler, count := flakyApp(newFakeApp(t), 1, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusInternalServerError, apiError("Internal", "internal error"))
	})
	s := serveApp(t, handler, "")
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	assertStatus(t, err, codes.Internal, "internal error")
	assert.Equal(t, int32(1), count.Load())
}

func TestRetryAfterBeyondTheDeadlineFailsWithTheAppsMessage(t *testing.T) {
	handler, count := flakyApp(newFakeApp(t), 100, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "120")
		writeJSON(w, http.StatusTooManyRequests, apiError("ResourceExhausted", "Key Vault is throttling"))
	})
	s := serveApp(t, handler, "")
	start := time.Now()
	err := getKeyWithin(s, 30*time.Second)
	assertStatus(t, err, codes.ResourceExhausted, "Key Vault is throttling (gave up after 1 attempts within the call's deadline)")
	assert.Equal(t, int32(1), count.Load(), "a Retry-After past the deadline is not waited for")
	// Sleeping out the Retry-After would hold the call until its deadline, 29 s; one answer from a
	// local server takes far less than 10 s even on a loaded machine.
	assert.Less(t, time.Since(start), 10*time.Second, "the call waited for a Retry-After that ends past its deadline")
}

func TestARetryAfterWithinTheDeadlineIsWaitedExactlyThatLongAndTheAppsMessageReachesSPIRE(t *testing.T) {
	const message = "Key Vault is throttling this app's operations on keys: nothing was sent, retry after the wait"
	var mu sync.Mutex
	var arrivals []time.Time
	s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		w.Header().Set("Retry-After", "2")
		writeJSON(w, http.StatusTooManyRequests, apiError("ResourceExhausted", message))
	}), "")
	start := time.Now()
	err := getKeyWithin(s, 5*time.Second)
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.Equal(t, message+" (gave up after 3 attempts within the call's deadline)", status.Convert(err).Message())
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, arrivals, 3, "attempts at 0, 2 and 4 s; one at 6 s would be past the 5 s deadline")
	for i := 1; i < len(arrivals); i++ {
		gap := arrivals[i].Sub(arrivals[i-1])
		assert.GreaterOrEqual(t, gap, 2*time.Second, "an attempt came before the app's Retry-After ended")
		assert.Less(t, gap, 2*time.Second+300*time.Millisecond, "the plugin waited longer than the app's Retry-After")
	}
	// After the third answer the next wait would end past the deadline: the call ends then, not at the deadline.
	assert.Less(t, elapsed, 4*time.Second+300*time.Millisecond, "the call waited on once no attempt could follow")
}

func signWithin(s *served, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	digest := sha256.Sum256([]byte("data"))
	_, err := s.km.SignData(ctx, &keymanagerv1.SignDataRequest{
		KeyId: "x509-CA-A", Data: digest[:], SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	})
	return err
}

func TestASignWaitsOutOneThrottlingOnly(t *testing.T) {
	const message = "Key Vault is throttling this app's operations on keys: nothing was sent, retry after the wait"
	throttle := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "0")
		writeJSON(w, http.StatusTooManyRequests, apiError("ResourceExhausted", message))
	}
	unavailable := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "0")
		writeJSON(w, http.StatusServiceUnavailable, apiError("Unavailable", "Key Vault does not answer"))
	}
	t.Run("throttled once, then served", func(t *testing.T) {
		handler, count := flakyApp(newFakeApp(t), 1, throttle)
		require.NoError(t, signWithin(serveApp(t, handler, ""), 30*time.Second))
		assert.Equal(t, int32(2), count.Load())
	})
	t.Run("throttled again", func(t *testing.T) {
		handler, count := flakyApp(newFakeApp(t), 100, throttle)
		err := signWithin(serveApp(t, handler, ""), 30*time.Second)
		assertStatus(t, err, codes.ResourceExhausted, message+" (throttled again after waiting once; 2 attempts)")
		assert.Equal(t, int32(2), count.Load(), "a sign waits out one Retry-After, not a second")
	})
	t.Run("throttled again after an unavailable app", func(t *testing.T) {
		var answered atomic.Int32
		s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if answered.Add(1) == 2 {
				unavailable(w, r)
				return
			}
			throttle(w, r)
		}), "")
		err := signWithin(s, 30*time.Second)
		assertStatus(t, err, codes.ResourceExhausted, "(throttled again after waiting once; 3 attempts)")
		assert.Equal(t, int32(3), answered.Load())
	})
	t.Run("unavailable keeps its retries", func(t *testing.T) {
		handler, count := flakyApp(newFakeApp(t), 3, unavailable)
		require.NoError(t, signWithin(serveApp(t, handler, ""), 30*time.Second))
		assert.Equal(t, int32(4), count.Load())
	})
	t.Run("a reserved turn is waited for, and taken with its ticket", func(t *testing.T) {
		var mu sync.Mutex
		var turns []string
		app := newFakeApp(t)
		s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			turns = append(turns, r.Header.Get("X-Retry-Turn"))
			n := len(turns)
			mu.Unlock()
			if n <= 3 {
				w.Header().Set("Retry-After", "1")
				w.Header().Set("retry-after-ms", "20")
				w.Header().Set("X-Retry-Turn", "turn-"+strconv.Itoa(n))
				writeJSON(w, http.StatusTooManyRequests, apiError("ResourceExhausted", message))
				return
			}
			app.ServeHTTP(w, r)
		}), "")
		start := time.Now()
		require.NoError(t, signWithin(s, 30*time.Second))
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []string{"", "turn-1", "turn-2", "turn-3"}, turns, "each attempt after a turn was given carries its ticket")
		assert.Less(t, time.Since(start), 900*time.Millisecond, "the plugin waited whole seconds, not the milliseconds of the turn")
	})
	t.Run("a 429 from in front of the app keeps its retries", func(t *testing.T) {
		handler, count := flakyApp(newFakeApp(t), 3, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "Too many requests", http.StatusTooManyRequests) // the Functions host shedding load
		})
		require.NoError(t, signWithin(serveApp(t, handler, ""), 30*time.Second))
		assert.Equal(t, int32(4), count.Load())
	})
}

func TestRetriesStopAtTheCallsDeadline(t *testing.T) {
	handler, count := flakyApp(newFakeApp(t), 1<<30, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, apiError("Unavailable", "Key Vault does not answer"))
	})
	err := getKeyWithin(serveApp(t, handler, ""), 300*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, status.Convert(err).Message(), "Key Vault does not answer")
	assert.Greater(t, count.Load(), int32(1))
}

func TestALastAttemptTheDeadlineCutsShortReportsTheAppsLastAnswer(t *testing.T) {
	var count atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) == 1 {
			writeJSON(w, http.StatusServiceUnavailable, apiError("Unavailable", "Key Vault does not answer"))
			return
		}
		<-r.Context().Done() // held until the call's deadline ends the attempt
	})
	err := getKeyWithin(serveApp(t, handler, ""), 300*time.Millisecond)
	assertStatus(t, err, codes.Unavailable, "Key Vault does not answer (gave up after 2 attempts within the call's deadline)")
	assert.Equal(t, int32(2), count.Load())
}

func TestConnectionFailuresAreRetried(t *testing.T) {
	app := newFakeApp(t)
	// The first two connections are dropped before an answer, as an app restarting would.
	server, dropped := serveDropping(t, app, 2)
	s := serveConfigured(t, server, "")
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	assert.Equal(t, int32(2), dropped.Load())
	assert.Len(t, app.recorded(), 1)
}

// serveDropping serves handler, closing its first `drop` connections once accepted.
func serveDropping(t *testing.T, handler http.Handler, drop int32) (*httptest.Server, *atomic.Int32) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var dropped atomic.Int32
	server := &httptest.Server{Listener: &droppingListener{Listener: listener, drop: drop, dropped: &dropped}, Config: &http.Server{Handler: handler}}
	server.Start()
	t.Cleanup(server.Close)
	return server, &dropped
}

type droppingListener struct {
	net.Listener
	drop    int32
	dropped *atomic.Int32
}

func (l *droppingListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil || l.dropped.Load() >= l.drop {
			return conn, err
		}
		l.dropped.Add(1)
		conn.Close()
	}
}

// holdingFirst holds the first request unanswered until the client gives up on it, then serves app.
func holdingFirst(t *testing.T, app *fakeApp) (http.Handler, *atomic.Int32) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return flakyApp(app, 1, func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that the server sees the client hang up
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
}

func TestAnAppNotAnsweringInTheRequestTimeoutIsRetried(t *testing.T) {
	handler, count := holdingFirst(t, newFakeApp(t))
	s := serveApp(t, handler, `request_timeout = "50ms"`)
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	assert.Equal(t, int32(2), count.Load())
	assert.Contains(t, s.log.String(), "no answer within request_timeout 50ms")
}

func TestAStoppedAppFailsClearlyWithinTheDeadline(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	address := listener.Addr().String()
	listener.Close() // nothing listens there any more
	s := serve(t)
	require.NoError(t, s.configure(t, pluginConfig("http://"+address)))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.km.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
	require.Error(t, err)
	assert.Contains(t, status.Convert(err).Message(), "the app at http://"+address+" did not answer")
	assert.Contains(t, status.Convert(err).Message(), "gave up after")
}

func assertStatus(t *testing.T, err error, code codes.Code, message string) {
	t.Helper()
	require.Error(t, err)
	assert.Equal(t, code, status.Code(err), "status: %v", err)
	assert.Contains(t, status.Convert(err).Message(), message)
}

func stripProto(key *keymanagerv1.PublicKey) *keymanagerv1.PublicKey {
	return &keymanagerv1.PublicKey{Id: key.Id, Type: key.Type, PkixData: key.PkixData, Fingerprint: key.Fingerprint}
}

func base64Encode(data []byte) string { return base64.StdEncoding.EncodeToString(data) }

func base64Decode(text string) ([]byte, error) { return base64.StdEncoding.DecodeString(text) }

func TestAnIncompleteAnswerIsInternalNotASuccess(t *testing.T) {
	for name, body := range map[string]string{
		"no public key":     `{}`,
		"another key's id":  `{"public_key": {"id": "other", "type": "ec-p256", "pkix_data": "AAAA", "fingerprint": "ab"}}`,
		"unknown key type":  `{"public_key": {"id": "x509-CA-A", "type": "ed25519", "pkix_data": "AAAA", "fingerprint": "ab"}}`,
		"no fingerprint":    `{"public_key": {"id": "x509-CA-A", "type": "ec-p256", "pkix_data": "AAAA"}}`,
		"not JSON":          `<html></html>`,
		"pkix_data not b64": `{"public_key": {"id": "x509-CA-A", "type": "ec-p256", "pkix_data": "%%", "fingerprint": "ab"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, body)
			}), "")
			_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
			assert.Equal(t, codes.Internal, status.Code(err), "%v", err)
		})
	}
}
