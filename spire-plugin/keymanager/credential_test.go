package keymanager

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeCredential stands in for azidentity's credential. Each GetToken call gets a token of its own,
// so a test can tell which call a request's token came from.
type fakeCredential struct {
	mu     sync.Mutex
	built  *settings
	calls  int
	scopes [][]string
	// fail, when set, decides whether GetToken call number `call` fails, and may wait on ctx.
	fail func(ctx context.Context, call int) error
}

func (c *fakeCredential) record(built *settings) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.built = built
}

func (c *fakeCredential) GetToken(ctx context.Context, options policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	c.calls++
	call := c.calls
	c.scopes = append(c.scopes, options.Scopes)
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		if err := fail(ctx, call); err != nil {
			return azcore.AccessToken{}, err
		}
	}
	return azcore.AccessToken{Token: fakeToken(call), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (c *fakeCredential) failWith(fail func(ctx context.Context, call int) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = fail
}

func (c *fakeCredential) callCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func (c *fakeCredential) requestedScopes() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.scopes...)
}

func (c *fakeCredential) builtWith() *settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.built
}

// fakeToken is the access token of GetToken call number `call`: a v2.0 token's shape and claims,
// and a signature that is the part no log line may show.
func fakeToken(call int) string {
	return jwt(fmt.Sprintf(`{"aud":%q,"tid":%q,"oid":%q,"azp":%q,"ver":"2.0"}`, apiClientID, signedInTenantID, signedInObjectID, signedInClientID)) +
		fmt.Sprintf("token-signature-%d-that-must-stay-secret", call)
}

// jwt is a JWT's header and payload, and the dot before its signature.
func jwt(payload string) string {
	encode := base64.RawURLEncoding.EncodeToString
	return encode([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + encode([]byte(payload)) + "."
}

// errAuthenticationFailed reads like azidentity's AuthenticationFailedError: several lines between rules.
var errAuthenticationFailed = errors.New("ClientSecretCredential authentication failed. \n" +
	"POST https://login.microsoftonline.com/" + signedInTenantID + "/oauth2/v2.0/token\n" +
	"--------------------------------------------------------------------------------\n" +
	"RESPONSE 401: 401 Unauthorized\n" +
	"--------------------------------------------------------------------------------\n" +
	"{\n  \"error\": \"invalid_client\",\n  \"error_description\": \"AADSTS7000215: Invalid client secret provided.\"\n}\n" +
	"--------------------------------------------------------------------------------\n" +
	"To troubleshoot, visit https://aka.ms/azsdk/go/identity/troubleshoot#client-secret")

// waitForTheDeadline is an identity endpoint that does not answer: GetToken ends with its
// context, or after a while if it was given none.
func waitForTheDeadline(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("ManagedIdentityCredential: %w", ctx.Err())
	case <-time.After(5 * time.Second):
		return errors.New("ManagedIdentityCredential: GetToken had no deadline")
	}
}

func TestSignInLogsWhoThePluginIsFromTheToken(t *testing.T) {
	s := serveApp(t, newFakeApp(t), "")
	log := s.log.String()
	assert.Contains(t, log, "Signed in to Entra ID")
	assert.Contains(t, log, "tenant_id="+signedInTenantID)
	assert.Contains(t, log, "object_id="+signedInObjectID)
	assert.Contains(t, log, "client_id="+signedInClientID)
	assert.Contains(t, log, "credential=managed_identity")
	assert.Equal(t, 1, s.credential.callCount(), "Configure gets one token")
	assert.Equal(t, [][]string{{tokenScope}}, s.credential.requestedScopes())
}

func TestAV1TokensAppIDIsItsClientID(t *testing.T) {
	identity, err := readTokenIdentity(jwt(`{"tid":"t","oid":"o","appid":"a","ver":"1.0"}`) + "signature")
	require.NoError(t, err)
	assert.Equal(t, tokenIdentity{TenantID: "t", ObjectID: "o", AppID: "a"}, identity)
	assert.Equal(t, "a", identity.clientID())
	_, err = readTokenIdentity("opaque")
	assert.EqualError(t, err, "the access token is not a JWT")
}

func TestConfigureFailsClearlyWhenSignInFails(t *testing.T) {
	s := serve(t)
	s.credential.failWith(func(context.Context, int) error { return errAuthenticationFailed })
	err := s.configure(t, pluginConfig("https://app.example.net"))
	assertStatus(t, err, codes.Unavailable, `unable to sign in to Microsoft Entra ID: unable to get an access token for `+tokenScope+
		` from Microsoft Entra ID with credential "managed_identity": ClientSecretCredential authentication failed. POST https://login.microsoftonline.com/`)
	message := status.Convert(err).Message()
	assert.Contains(t, message, `RESPONSE 401: 401 Unauthorized { "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided." } To troubleshoot`)
	assert.NotContains(t, message, "\n", "one line in SPIRE's log")
	assert.NotContains(t, message, "-----")
	_, err = s.km.GetPublicKeys(context.Background(), &keymanagerv1.GetPublicKeysRequest{})
	assertStatus(t, err, codes.FailedPrecondition, "not configured")
}

func TestConfigureFailsClearlyWhenSignInTakesLongerThanTheRequestTimeout(t *testing.T) {
	s := serve(t)
	s.credential.failWith(func(ctx context.Context, _ int) error {
		return waitForTheDeadline(ctx)
	})
	err := s.configure(t, pluginConfig("https://app.example.net")+`request_timeout = "50ms"`)
	assertStatus(t, err, codes.Unavailable, `with credential "managed_identity": no token within request_timeout 50ms (ManagedIdentityCredential: context deadline exceeded)`)
}

func TestConfigureFailsClearlyWhenTheCredentialCannotBeBuilt(t *testing.T) {
	s := serveWithCredential(t, func(*settings) (azcore.TokenCredential, error) {
		return nil, errors.New("invalid tenantID.\nYou can locate your tenantID")
	})
	err := s.configure(t, pluginConfig("https://app.example.net"))
	assertStatus(t, err, codes.InvalidArgument, `credential "managed_identity" cannot be set up: invalid tenantID. You can locate your tenantID`)
}

func TestTheTokenIsAskedForOnEveryAttemptAndAFailureIsRetried(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, app, "")
	s.credential.failWith(func(_ context.Context, call int) error {
		if call == 2 || call == 3 {
			return errAuthenticationFailed
		}
		return nil
	})
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	requests := app.recorded()
	require.Len(t, requests, 1, "no request went without a token")
	assert.Equal(t, "Bearer "+fakeToken(4), requests[0].header.Get("Authorization"))
	log := s.log.String()
	assert.Contains(t, log, "retrying")
	assert.Contains(t, log, `code=Unavailable reason="unable to get an access token for `+tokenScope+
		` from Microsoft Entra ID with credential \"managed_identity\": ClientSecretCredential authentication failed.`)
	assert.Contains(t, log, "AADSTS7000215: Invalid client secret provided.")
}

func TestATokenThatNeverComesFailsUnavailableWithinTheDeadline(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, app, "")
	s.credential.failWith(func(_ context.Context, call int) error {
		if call > 1 {
			return errAuthenticationFailed
		}
		return nil
	})
	err := getKeyWithin(s, 300*time.Millisecond)
	assertStatus(t, err, codes.Unavailable, `unable to get an access token for `+tokenScope+` from Microsoft Entra ID with credential "managed_identity": `)
	message := status.Convert(err).Message()
	assert.Contains(t, message, "AADSTS7000215: Invalid client secret provided.")
	assert.Contains(t, message, "gave up after")
	assert.NotContains(t, message, "\n")
	assert.Greater(t, s.credential.callCount(), 3)
	assert.Empty(t, app.recorded())
}

func TestGetTokenHasTheAttemptsTimeout(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, app, `request_timeout = "50ms"`)
	s.credential.failWith(func(ctx context.Context, call int) error {
		if call == 2 {
			return waitForTheDeadline(ctx)
		}
		return nil
	})
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	assert.Contains(t, s.log.String(), "no token within request_timeout 50ms")
	assert.Len(t, app.recorded(), 1)
}

func TestTheAppsRefusalsAreNotRetriedAndKeepTheAppsMessage(t *testing.T) {
	refusedToken := "the bearer token is for another audience: ask Entra ID for scope " + tokenScope
	notThisServer := `caller ` + signedInObjectID + ` may not act as SPIRE server "spire-1": SPIRE_SERVER_IDENTITIES does not give it that name`
	for _, tt := range []struct {
		name       string
		statusCode int
		challenge  string
		body       map[string]any
		code       codes.Code
		message    string
	}{
		{"token refused", http.StatusUnauthorized, `Bearer error="invalid_token"`, apiError("Unauthenticated", refusedToken), codes.Unauthenticated, refusedToken},
		{"not this server's identity", http.StatusForbidden, `Bearer error="insufficient_scope"`, apiError("PermissionDenied", notThisServer), codes.PermissionDenied, notThisServer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var count atomic.Int32
			s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				count.Add(1)
				w.Header().Set("WWW-Authenticate", tt.challenge)
				writeJSON(w, tt.statusCode, tt.body)
			}), "")
			_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
			require.Error(t, err)
			assert.Equal(t, tt.code, status.Code(err))
			assert.Equal(t, tt.message, status.Convert(err).Message())
			assert.Equal(t, int32(1), count.Load())
		})
	}
}

func TestABare401NamesTheChallenge(t *testing.T) {
	s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="app", error="invalid_token", error_description="The audience is invalid"`)
		w.WriteHeader(http.StatusUnauthorized)
	}), "")
	_, err := s.km.GetPublicKeys(context.Background(), &keymanagerv1.GetPublicKeysRequest{})
	assertStatus(t, err, codes.Unauthenticated, `(HTTP 401 Unauthorized, Bearer realm="app", error="invalid_token", error_description="The audience is invalid"): check api_client_id and credential`)
}

func TestABare403WithoutServerNameNamesTheServerTheIdentityHolds(t *testing.T) {
	server := newFakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	s := serve(t)
	require.NoError(t, s.configure(t, pluginConfig(server.URL)))
	_, err := s.km.GetPublicKeys(context.Background(), &keymanagerv1.GetPublicKeysRequest{})
	assertStatus(t, err, codes.PermissionDenied, "SPIRE_SERVER_IDENTITIES lets this identity act as the server it holds there (server_name is unset)")
}

func TestTheTokenAndTheAppSecretAreInNoLogLineOrError(t *testing.T) {
	t.Setenv(appSecretEnv, appSecret)
	handler, _ := flakyApp(newFakeApp(t), 2, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, apiError("Unavailable", "echo of a header: "+r.Header.Get("User-Agent")))
	})
	server := newFakeServer(t, handler)
	s := serve(t)
	require.NoError(t, s.configure(t, `app_url = "`+server.URL+`"
api_client_id = "`+apiClientID+`"
credential = "client_secret"
tenant_id = "`+signedInTenantID+`"
app_id = "`+signedInClientID+`"
app_secret_env = "`+appSecretEnv+`"
`))
	assert.Equal(t, appSecret, s.credential.builtWith().credential.appSecret, "the secret reached the credential")
	var errs []error
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	_, err = s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "missing"})
	errs = append(errs, err)
	s.credential.failWith(func(context.Context, int) error { return errAuthenticationFailed })
	errs = append(errs, getKeyWithin(s, 100*time.Millisecond))

	log := s.log.String()
	assert.Contains(t, log, `app_secret_from="environment variable `+appSecretEnv+`"`)
	assert.Contains(t, log, "retrying")
	for _, text := range append([]string{log}, errs[0].Error(), errs[1].Error()) {
		assert.NotContains(t, text, appSecret)
		assert.NotContains(t, text, "token-signature-")
		for call := 1; call <= s.credential.callCount(); call++ {
			assert.NotContains(t, text, fakeToken(call))
		}
	}
}

func TestOneLineKeepsEveryLineButTheRules(t *testing.T) {
	assert.Equal(t, "first line second line { \"a\": 1 }", oneLine(errors.New("first  line\n-----\n second line\n{\n  \"a\": 1\n}\n")))
	assert.False(t, strings.Contains(oneLine(errAuthenticationFailed), "\n"))
}

// realCredential builds azidentity's credential as Configure does, from settings parsed from
// credentialConfig and then changed by adjust.
func realCredential(t *testing.T, credentialConfig string, adjust func(*credentialSettings)) (azcore.TokenCredential, error) {
	t.Helper()
	parsed, err := parseSettings(withCredential(credentialConfig), trustDomain)
	require.NoError(t, err)
	adjust(&parsed.credential)
	return newAzureCredential(parsed)
}

func keepSettings(*credentialSettings) {}

// An authority host azidentity refuses shows that the configured one reaches it.
func plainHTTPAuthority(c *credentialSettings) { c.authorityHost = "http://login.example.net/" }

func TestTheWorkloadIdentityCredentialIsBuiltFromTheSettings(t *testing.T) {
	setWorkloadIdentityEnvironment(t)
	parsed, err := parseSettings(withCredential(`credential = "workload_identity"`), trustDomain)
	require.NoError(t, err)
	// azidentity would read these itself, and fail without them, had the plugin not passed them on.
	unsetEnvironment(t, tenantIDVariable, clientIDVariable, federatedTokenFileVariable)
	credential, err := newAzureCredential(parsed)
	require.NoError(t, err)
	assert.IsType(t, &azidentity.WorkloadIdentityCredential{}, credential)

	setWorkloadIdentityEnvironment(t)
	_, err = realCredential(t, `credential = "workload_identity"`, plainHTTPAuthority)
	assert.ErrorContains(t, err, "cannot use an authority host without https")
}

func TestTheManagedIdentityCredentialIsBuiltForTheConfiguredIdentity(t *testing.T) {
	var messages []string
	azlog.SetEvents(azidentity.EventAuthentication)
	azlog.SetListener(func(_ azlog.Event, message string) { messages = append(messages, message) })
	t.Cleanup(func() {
		azlog.SetListener(nil)
		azlog.SetEvents()
	})
	for _, tt := range []struct {
		name, config, identity string
	}{
		{"system-assigned", `credential = "managed_identity"`, "managed identity"},
		{"user-assigned", `credential = "managed_identity"
managed_identity_client_id = "` + otherClientID + `"`, `managed identity with client ID "` + otherClientID + `"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			messages = nil
			credential, err := realCredential(t, tt.config, keepSettings)
			require.NoError(t, err)
			assert.IsType(t, &azidentity.ManagedIdentityCredential{}, credential)
			require.Len(t, messages, 1)
			assert.True(t, strings.HasSuffix(messages[0], tt.identity), "azidentity said: %s", messages[0])
		})
	}
}

func TestTheClientSecretCredentialIsBuiltFromTheSettings(t *testing.T) {
	t.Setenv(appSecretEnv, appSecret)
	config := `credential = "client_secret"
tenant_id = "` + signedInTenantID + `"
app_id = "` + signedInClientID + `"
app_secret_env = "` + appSecretEnv + `"
disable_instance_discovery = true`
	credential, err := realCredential(t, config, keepSettings)
	require.NoError(t, err)
	assert.IsType(t, &azidentity.ClientSecretCredential{}, credential)

	_, err = realCredential(t, config, plainHTTPAuthority)
	assert.ErrorContains(t, err, "cannot use an authority host without https")
	_, err = realCredential(t, config, func(c *credentialSettings) { c.appSecret = "" })
	assert.ErrorContains(t, err, "secret can't be empty", "the secret read reaches azidentity")
}

func TestTheDefaultCredentialIsAzidentitysChain(t *testing.T) {
	unsetEnvironment(t, "AZURE_TOKEN_CREDENTIALS")
	credential, err := realCredential(t, `credential = "default"
authority_host = "https://login.microsoftonline.us"`, keepSettings)
	require.NoError(t, err)
	assert.IsType(t, &azidentity.DefaultAzureCredential{}, credential)
}
