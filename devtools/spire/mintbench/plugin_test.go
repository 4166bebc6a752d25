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
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// signingApp answers like the app for mintbench's key; its second sign is throttled once, so the
// plugin retries it. Each sign that succeeds reports its number as the app's time in milliseconds.
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

func TestASampleIsTheRoundTripOfItsOwnCallAndARetriedCallHasNone(t *testing.T) {
	transport := http.DefaultTransport
	t.Cleanup(func() { http.DefaultTransport = transport })
	stages, err := newPluginStages("example.org", signingApp(t).URL, "mintbench")
	if err != nil {
		t.Fatal(err)
	}

	if err := stages.sign(true); err != nil {
		t.Fatal(err)
	}
	err = stages.sign(true)
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
}
