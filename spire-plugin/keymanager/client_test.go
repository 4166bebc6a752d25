package keymanager

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func retryAfterOf(headers ...string) time.Duration {
	header := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		header.Set(headers[i], headers[i+1])
	}
	return parseRetryAfter(header)
}

func TestRetryAfterIsReadAsMillisecondsOrSecondsOrAnHTTPDate(t *testing.T) {
	assert.Equal(t, 7*time.Second, retryAfterOf("Retry-After", "7"))
	assert.Equal(t, 420*time.Millisecond, retryAfterOf("Retry-After", "1", "retry-after-ms", "420"), "the milliseconds are the more precise")
	assert.Equal(t, time.Second, retryAfterOf("Retry-After", "1", "retry-after-ms", "soon"))
	assert.Zero(t, retryAfterOf())
	assert.Zero(t, retryAfterOf("Retry-After", "soon"))
	assert.Zero(t, retryAfterOf("Retry-After", "-3"))
	assert.Zero(t, retryAfterOf("Retry-After", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)), "a date in the past asks for no wait")
	inAMinute := retryAfterOf("Retry-After", time.Now().Add(time.Minute).UTC().Format(http.TimeFormat))
	assert.Greater(t, inAMinute, 50*time.Second)
	assert.LessOrEqual(t, inAMinute, time.Minute)
}

func TestBackoffGrowsWithJitterUpToItsCap(t *testing.T) {
	policy := backoff{base: 100 * time.Millisecond, max: time.Second}
	for retry, ceiling := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 40: time.Second} {
		delay := policy.delay(retry)
		assert.GreaterOrEqual(t, delay, ceiling/2, "retry %d", retry)
		assert.LessOrEqual(t, delay, ceiling, "retry %d", retry)
	}
}
