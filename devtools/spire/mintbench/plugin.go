package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"azure-kv-keymanager/spire-plugin/keymanager"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

const directKeyID = "mintbench-direct"

// roundTripTimer times the HTTP round trips (to the response headers) of one call and reads the
// app's own time from devhost's Server-Timing header ("function;dur=<ms>").
type roundTripTimer struct {
	base  http.RoundTripper
	mu    sync.Mutex
	trips []roundTrip // since startCall
}

type roundTrip struct {
	elapsed  time.Duration
	function time.Duration // zero when the trip failed
}

func (t *roundTripTimer) RoundTrip(request *http.Request) (*http.Response, error) {
	started := time.Now()
	response, err := t.base.RoundTrip(request)
	trip := roundTrip{elapsed: time.Since(started)}
	if err == nil {
		trip.function = serverTiming(response.Header.Get("Server-Timing"), "function")
	}
	t.mu.Lock()
	t.trips = append(t.trips, trip)
	t.mu.Unlock()
	return response, err
}

// startCall forgets the trips of the calls before.
func (t *roundTripTimer) startCall() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trips = nil
}

// onlyTrip is the call's round trip; a call retried or without one has no stages to report.
func (t *roundTripTimer) onlyTrip() (roundTrip, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.trips) != 1 {
		return roundTrip{}, fmt.Errorf("the call made %d HTTP round trips, not 1: its stages would not add up", len(t.trips))
	}
	return t.trips[0], nil
}

// serverTiming reads one metric's dur (milliseconds) from a Server-Timing header; zero if absent.
func serverTiming(header, metric string) time.Duration {
	for _, entry := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(entry), ";")
		if name != metric {
			continue
		}
		for _, param := range strings.Split(params, ";") {
			if value, ok := strings.CutPrefix(strings.TrimSpace(param), "dur="); ok {
				if ms, err := strconv.ParseFloat(value, 64); err == nil {
					return time.Duration(ms * float64(time.Millisecond))
				}
			}
		}
	}
	return 0
}

// pluginStages signs through the plugin's SignData in this process: its whole call, its HTTP round
// trip and the app's own time, per call.
type pluginStages struct {
	plugin  *keymanager.Plugin
	timer   *roundTripTimer
	request *keymanagerv1.SignDataRequest
	samples map[string][]int64
}

func newPluginStages(trustDomain, pluginData string) (*pluginStages, error) {
	// The plugin's HTTP client uses the default transport: time it there. Its credential has a
	// transport of its own (azcore's) and a cached token, so signing in adds no trip to a sign.
	timer := &roundTripTimer{base: http.DefaultTransport}
	http.DefaultTransport = timer
	plugin := keymanager.New()
	ctx := context.Background()
	if _, err := plugin.Configure(ctx, &configv1.ConfigureRequest{
		HclConfiguration:  pluginData,
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: trustDomain},
	}); err != nil {
		return nil, err
	}
	if _, err := plugin.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: directKeyID, KeyType: keymanagerv1.KeyType_EC_P256}); err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte("mintbench"))
	request := &keymanagerv1.SignDataRequest{
		KeyId:      directKeyID,
		Data:       digest[:],
		SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	}
	return &pluginStages{plugin: plugin, timer: timer, request: request, samples: map[string][]int64{}}, nil
}

func (s *pluginStages) sign(measured bool) error {
	s.timer.startCall()
	started := time.Now()
	if _, err := s.plugin.SignData(context.Background(), s.request); err != nil {
		return fmt.Errorf("the plugin's SignData: %w", err)
	}
	sign := time.Since(started)
	if !measured {
		return nil
	}
	trip, err := s.timer.onlyTrip()
	if err != nil {
		return fmt.Errorf("the plugin's SignData: %w", err)
	}
	s.samples["sign"] = append(s.samples["sign"], sign.Nanoseconds())
	s.samples["round_trip"] = append(s.samples["round_trip"], trip.elapsed.Nanoseconds())
	s.samples["function"] = append(s.samples["function"], trip.function.Nanoseconds())
	return nil
}

func (s *pluginStages) samplesOrNil() map[string][]int64 {
	if s == nil {
		return nil
	}
	return s.samples
}
