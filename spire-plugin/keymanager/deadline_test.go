package keymanager

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestACallWithoutADeadlineRetriesWithinSPIREs30Seconds(t *testing.T) {
	before := time.Now()
	ctx, cancel := withReplyMargin(context.Background())
	defer cancel()
	deadline, ok := ctx.Deadline()
	require.True(t, ok)
	// The README's 30 s per call, less the 1 s kept to send the app's last message back.
	assert.WithinRange(t, deadline, before.Add(29*time.Second), time.Now().Add(29*time.Second))
}
