package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	apiClientID    = "00000000-0000-0000-0000-0000000000a1"
	identityHeader = "mintbench-identity-header"
	// What the plugin reads of a token: it says who signed in; only the app verifies it.
	accessToken = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiJtaW50YmVuY2gifQ.c2lnbmF0dXJl"
)

// managedIdentityEndpoint answers like App Service's managed-identity endpoint (IDENTITY_ENDPOINT),
// from which the plugin's own azidentity credential gets its token; it counts the tokens it gives.
func managedIdentityEndpoint(t *testing.T, issued *atomic.Int32) *httptest.Server {
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resource := r.URL.Query().Get("resource")
		if r.Header.Get("X-IDENTITY-HEADER") != identityHeader || resource != "api://"+apiClientID {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprint(w, `{"statusCode": 400, "message": "not the identity header or the app's API"}`)
			return
		}
		issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"access_token": accessToken, "expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
			"resource": resource, "token_type": "Bearer",
		})
	}))
	t.Cleanup(endpoint.Close)
	return endpoint
}

// signingApp answers like the app for mintbench's key, to requests with the token only; its
// second sign is throttled once, so the plugin retries it. Each sign that succeeds reports its
// number as the app's time in milliseconds.
func signingApp(t *testing.T) *httptest.Server {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	const fingerprint = "mintbench-key"
	var signs atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+accessToken {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprint(w, `{"error": {"code": "Unauthenticated", "message": "no access token"}}`)
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/sign") {
			_ = json.NewEncoder(w).Encode(map[string]any{"public_key": map[string]any{
				"id": directKeyID, "type": "ec-p256", "pkix_data": pkix, "fingerprint": fingerprint,
			}})
			return
		}
		sign := signs.Add(1)
		if sign == 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = fmt.Fprint(w, `{"error": {"code": "ResourceExhausted", "message": "throttled"}}`)
			return
		}
		w.Header().Set("Server-Timing", fmt.Sprintf("function;dur=%d", sign))
		_ = json.NewEncoder(w).Encode(map[string]any{"signature": []byte("signature"), "key_fingerprint": fingerprint})
	}))
	t.Cleanup(app.Close)
	return app
}

// newSignedInStages configures the plugin as the benchmark does, signing in as a managed identity.
func newSignedInStages(t *testing.T, issued *atomic.Int32) *pluginStages {
	t.Setenv("IDENTITY_ENDPOINT", managedIdentityEndpoint(t, issued).URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", identityHeader)
	transport := http.DefaultTransport
	t.Cleanup(func() { http.DefaultTransport = transport })
	pluginData := fmt.Sprintf("app_url = %q\nserver_name = \"mintbench\"\napi_client_id = %q\ncredential = \"managed_identity\"\n",
		signingApp(t).URL, apiClientID)
	stages, err := newPluginStages("example.org", pluginData)
	if err != nil {
		t.Fatal(err)
	}
	return stages
}

func TestASampleIsTheRoundTripOfItsOwnCallAndARetriedCallHasNone(t *testing.T) {
	var issued atomic.Int32
	stages := newSignedInStages(t, &issued)

	if err := stages.sign(true); err != nil {
		t.Fatal(err)
	}
	err := stages.sign(true)
	if err == nil || !strings.Contains(err.Error(), "the call made 2 HTTP round trips, not 1") {
		t.Fatalf("a retried sign gave a sample: error %v, samples %v", err, stages.samples)
	}
	if want := []int64{time.Millisecond.Nanoseconds()}; !reflect.DeepEqual(stages.samples["function"], want) {
		t.Fatalf("function samples %v, want %v: only the first call's", stages.samples["function"], want)
	}
	if err := stages.sign(true); err != nil {
		t.Fatal(err)
	}
	if got := stages.samples["function"][1]; got != 4*time.Millisecond.Nanoseconds() {
		t.Fatalf("the third call's sample is %v, not its own round trip's 4ms", time.Duration(got))
	}
	if got := issued.Load(); got != 1 {
		t.Fatalf("the plugin got %d tokens, not the one it signed in with: a sign would have timed a token's round trip", got)
	}
}
