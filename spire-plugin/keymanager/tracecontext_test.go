package keymanager

import (
	"context"
	"net/http"
	"regexp"
	"sync"
	"testing"

	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
)

var sentTraceparent = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// tracingApp answers like app, 503 to the first request, and records each request's traceparent.
type tracingApp struct {
	app          *fakeApp
	mu           sync.Mutex
	traceparents []string
}

func (a *tracingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.traceparents = append(a.traceparents, r.Header.Get("traceparent"))
	first := len(a.traceparents) == 1
	a.mu.Unlock()
	if first {
		w.Header().Set("Retry-After", "0")
		writeJSON(w, http.StatusServiceUnavailable, apiError("Unavailable", "Key Vault does not answer"))
		return
	}
	a.app.ServeHTTP(w, r)
}

// sent is the trace id and span id of each request, in order.
func (a *tracingApp) sent(t *testing.T) [][2]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sent [][2]string
	for _, traceparent := range a.traceparents {
		found := sentTraceparent.FindStringSubmatch(traceparent)
		require.NotNil(t, found, "not a W3C traceparent: %q", traceparent)
		sent = append(sent, [2]string{found[1], found[2]})
	}
	return sent
}

func TestEachCallIsATraceAndEachAttemptASpanOfIt(t *testing.T) {
	app := &tracingApp{app: newFakeApp(t)}
	s := serveApp(t, app, "")
	_, err := s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	_, err = s.km.GetPublicKey(context.Background(), &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	sent := app.sent(t)
	require.Len(t, sent, 3)
	assert.Equal(t, sent[0][0], sent[1][0], "the retry is in the call's trace")
	assert.NotEqual(t, sent[0][1], sent[1][1], "each attempt is a span of its own")
	assert.NotEqual(t, sent[1][0], sent[2][0], "another call is another trace")
}

func TestACallCarryingATraceparentContinuesItsTrace(t *testing.T) {
	app := &tracingApp{app: newFakeApp(t)}
	s := serveApp(t, app, "")
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	_, err := s.km.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "x509-CA-A"})
	require.NoError(t, err)
	sent := app.sent(t)
	require.Len(t, sent, 2) // the first answered 503, and retried
	for _, request := range sent {
		assert.Equal(t, callerTrace, request[0])
		assert.NotEqual(t, callerSpan, request[1])
	}
}

func TestAnInvalidTraceparentStartsATrace(t *testing.T) {
	for _, traceparent := range []string{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "garbage"} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", traceparent))
		trace := traceOf(ctx)
		assert.Regexp(t, `^[0-9a-f]{32}$`, trace.traceID)
		assert.NotContains(t, traceparent, trace.traceID)
	}
}
