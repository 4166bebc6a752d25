package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// mintDeadline is SPIRE's: the agent and the CLIs give a server call 30 s.
const mintDeadline = 30 * time.Second

// phase offers rate mints per second, spread over the servers in turn, for duration.
type phase struct {
	rate     float64
	duration time.Duration
}

// parsePhases reads "RATE@SECONDS,RATE@SECONDS,...", e.g. "20@60,40@60,10@30".
func parsePhases(text string) ([]phase, error) {
	var phases []phase
	for _, part := range strings.Split(text, ",") {
		rate, seconds, ok := strings.Cut(strings.TrimSpace(part), "@")
		r, rateErr := strconv.ParseFloat(rate, 64)
		s, secondsErr := strconv.ParseFloat(seconds, 64)
		if !ok || rateErr != nil || secondsErr != nil || r <= 0 || s <= 0 {
			return nil, fmt.Errorf("a phase is RATE@SECONDS with both positive, not %q", part)
		}
		phases = append(phases, phase{rate: r, duration: time.Duration(s * float64(time.Second))})
	}
	return phases, nil
}

// call is one mint of an open-loop load: when it started (since the load began), how long it took,
// and its gRPC status code ("OK" when it returned an SVID) with the message of a failure.
type call struct {
	Server    int    `json:"server"`
	StartedNs int64  `json:"started_ns"`
	ElapsedNs int64  `json:"elapsed_ns"`
	Code      string `json:"code"`
	Message   string `json:"message,omitempty"`
}

// load offers the phases' mints on schedule, whatever the servers answer (an open loop: a slow
// answer does not slow the offer), each call with SPIRE's deadline, and reports every call.
func load(trustDomain string, phases []phase, sockets []string) error {
	csr, err := newCSR(trustDomain)
	if err != nil {
		return err
	}
	var clients []svidv1.SVIDClient
	for _, socket := range sockets {
		conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients = append(clients, svidv1.NewSVIDClient(conn))
	}
	var (
		mu    sync.Mutex
		calls []call
		wg    sync.WaitGroup
	)
	begun := time.Now()
	phaseStart, sent := begun, 0
	for _, p := range phases {
		interval := time.Duration(float64(time.Second) / p.rate)
		for due := phaseStart; due.Before(phaseStart.Add(p.duration)); due = due.Add(interval) {
			time.Sleep(time.Until(due))
			server := sent % len(clients)
			sent++
			wg.Add(1)
			go func() {
				defer wg.Done()
				started := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), mintDeadline)
				defer cancel()
				response, err := clients[server].MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csr})
				result := call{Server: server, StartedNs: started.Sub(begun).Nanoseconds(), ElapsedNs: time.Since(started).Nanoseconds(), Code: "OK"}
				if err != nil {
					result.Code, result.Message = status.Code(err).String(), status.Convert(err).Message()
				} else if len(response.GetSvid().GetCertChain()) == 0 {
					result.Code, result.Message = "NoCertificate", "the server answered without a certificate"
				}
				mu.Lock()
				calls = append(calls, result)
				mu.Unlock()
			}()
		}
		phaseStart = phaseStart.Add(p.duration)
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(struct {
		Calls []call `json:"calls"`
	}{calls})
}
