package keymanager

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"regexp"

	"google.golang.org/grpc/metadata"
)

// W3C Trace Context (https://www.w3.org/TR/trace-context/): every request to the app carries a
// traceparent, so that the app's spans (and the Functions host's) join the KeyManager call's trace.
// SPIRE passes its plugins no trace context today: a call whose gRPC metadata carries a valid
// traceparent continues that trace, any other call starts its own. Each attempt is a span of its
// own under it (a new parent-id), so that the app's spans of two attempts are told apart.

const traceparentHeader = "traceparent"

// Version 00: trace-id, parent-id, trace-flags, in lowercase hex.
var traceparentPattern = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

// callTrace is the trace a KeyManager call's requests belong to.
type callTrace struct {
	traceID string
	flags   string
}

// traceOf is the trace of the call ctx belongs to: the caller's, or a new one (sampled).
func traceOf(ctx context.Context) callTrace {
	incoming, _ := metadata.FromIncomingContext(ctx)
	for _, traceparent := range incoming.Get(traceparentHeader) {
		if found := traceparentPattern.FindStringSubmatch(traceparent); found != nil && !allZeros(found[1]) && !allZeros(found[2]) {
			return callTrace{traceID: found[1], flags: found[3]}
		}
	}
	return callTrace{traceID: randomHex(16), flags: "01"}
}

// traceparent is the header of one request of the call: its trace, a new span.
func (t callTrace) traceparent() string {
	return "00-" + t.traceID + "-" + randomHex(8) + "-" + t.flags
}

// randomHex is n random bytes, not all zero (the spec's invalid value), in hex.
func randomHex(n int) string {
	for {
		id := make([]byte, n)
		_, _ = crand.Read(id) // crypto/rand.Read never fails (Go 1.24+)
		if encoded := hex.EncodeToString(id); !allZeros(encoded) {
			return encoded
		}
	}
}

func allZeros(id string) bool {
	for _, digit := range id {
		if digit != '0' {
			return false
		}
	}
	return true
}
