package keymanager

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func generateKeyWithin(s *served, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := s.km.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: "x509-CA-A", KeyType: keymanagerv1.KeyType_EC_P256})
	return err
}

func TestGenerateKeyIsRetriedOnlyWhenTheAppSaysNoKeyWasMade(t *testing.T) {
	for _, statusCode := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		for _, noKeyMade := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s, no key made: %t", http.StatusText(statusCode), noKeyMade), func(t *testing.T) {
				app := newFakeApp(t)
				var answered atomic.Int32
				s := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodPost || answered.Add(1) > 1 {
						app.ServeHTTP(w, r)
						return
					}
					if noKeyMade {
						w.Header().Set(keyCreatedHeader, "false")
					}
					w.Header().Set("Retry-After", "0")
					writeJSON(w, statusCode, apiError("Unavailable", "Key Vault did not answer"))
				}), "")
				err := generateKeyWithin(s, 30*time.Second)
				if noKeyMade {
					require.NoError(t, err)
					assert.Equal(t, int32(2), answered.Load())
					return
				}
				assertStatus(t, err, codes.Unavailable, "Key Vault did not answer")
				assert.Equal(t, int32(1), answered.Load())
				require.NoError(t, getKeyWithin(s, 30*time.Second), "reads keep their retries")
			})
		}
	}
}

func TestAGenerateKeyTheAppDidNotAnswerInTimeIsNotRetried(t *testing.T) {
	handler, count := holdingFirst(t, newFakeApp(t))
	err := generateKeyWithin(serveApp(t, handler, `request_timeout = "50ms"`), 30*time.Second)
	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "no answer within request_timeout 50ms")
	assert.Equal(t, int32(1), count.Load())
}

func TestAGenerateKeyWhoseConnectionWasDroppedIsNotRetried(t *testing.T) {
	app := newFakeApp(t)
	server, dropped := serveDropping(t, app, 1)
	err := generateKeyWithin(serveConfigured(t, server, ""), 30*time.Second)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, int32(1), dropped.Load())
	assert.Empty(t, app.recorded())
}

func TestAGenerateKeyWhoseConnectionWasRefusedIsRetried(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	address := listener.Addr().String()
	listener.Close()
	s := serve(t)
	require.NoError(t, s.configure(t, pluginConfig("http://"+address)))
	err = generateKeyWithin(s, 300*time.Millisecond)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "gave up after")
	assert.NotContains(t, status.Convert(err).Message(), "gave up after 1 attempts")
}

func TestEveryAttemptSendsItsDeadline(t *testing.T) {
	app := newFakeApp(t)
	s := serveApp(t, app, `request_timeout = "5s"`)
	before := time.Now()
	require.NoError(t, generateKeyWithin(s, 30*time.Second))
	require.NoError(t, getKeyWithin(s, 2*time.Second))
	requests := app.recorded()
	require.Len(t, requests, 2)
	deadlines := make([]time.Time, 2)
	var err error
	for i, request := range requests {
		deadlines[i], err = time.Parse(time.RFC3339Nano, request.header.Get(deadlineHeader))
		require.NoError(t, err, request.header.Get(deadlineHeader))
	}
	// The first attempt ends at request_timeout; the second at the call's deadline, less the reply margin.
	assert.WithinRange(t, deadlines[0], before.Add(5*time.Second-time.Millisecond), time.Now().Add(5*time.Second))
	assert.WithinRange(t, deadlines[1], before.Add(1700*time.Millisecond), time.Now().Add(1800*time.Millisecond))
}
