package keymanager

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRetryAfterIsReadAsSecondsOrAnHTTPDate(t *testing.T) {
	assert.Equal(t, 7*time.Second, parseRetryAfter("7"))
	assert.Zero(t, parseRetryAfter(""))
	assert.Zero(t, parseRetryAfter("soon"))
	assert.Zero(t, parseRetryAfter("-3"))
	assert.Zero(t, parseRetryAfter(time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)), "a date in the past asks for no wait")
	inAMinute := parseRetryAfter(time.Now().Add(time.Minute).UTC().Format(http.TimeFormat))
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
