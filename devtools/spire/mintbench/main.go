// Command mintbench times the SVID hot path for the benchmarks.
//
// It mints X.509-SVIDs through spire-server's API (svid v1 MintX509SVID over each server's Unix
// socket), so that a benchmark measures the server and its KeyManager rather than a CLI process
// start. Servers are visited in interleaved rounds, their order rotating each round, so that
// machine noise reaches every server alike.
//
// With -plugin-data, each round also has the plugin's SignData sign once, called in this process
// without SPIRE, timing its HTTP round trip to the app and reading the app's own time (devhost's
// Server-Timing): the stages of a mint through the plugin, under the same load. The plugin is
// configured with that plugin_data (app_url, server_name, how it signs in to Entra ID), and signs
// in at start as it does in spire-server: this process's environment must hold what the
// credential reads.
//
//	mintbench -trust-domain example.org [-warmup 10] [-rounds 200] [-plugin-data HCL] api1.sock ...
//
// With -phases, it offers a load instead (load.go): mints at given rates for given durations, spread
// over the servers, and reports every call ({"calls": [...]}).
//
//	mintbench -trust-domain example.org -phases 20@60,40@60 api1.sock ...
//
// Output (stdout, JSON): {"nanoseconds": [[server 1's mints...], ...], "plugin": {"sign": [...],
// "round_trip": [...], "function": [...]}}.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	warmup := flag.Int("warmup", 10, "mints per server before measuring")
	rounds := flag.Int("rounds", 200, "measured mints per server")
	trustDomain := flag.String("trust-domain", "", "the servers' trust domain")
	pluginData := flag.String("plugin-data", "", "also sign through the plugin, configured with this plugin_data (HCL)")
	phasesFlag := flag.String("phases", "", "offer a load instead: RATE@SECONDS,... mints per second over all servers")
	flag.Parse()
	if *trustDomain == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mintbench -trust-domain TD [-warmup N] [-rounds N] [-plugin-data HCL] SOCKET...")
		os.Exit(2)
	}
	if *phasesFlag != "" {
		phases, err := parsePhases(*phasesFlag)
		if err == nil {
			err = load(*trustDomain, phases, flag.Args())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "mintbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*trustDomain, *pluginData, *warmup, *rounds, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mintbench:", err)
		os.Exit(1)
	}
}

// target is one thing timed each round; measured says whether the round counts.
type target func(measured bool) error

func run(trustDomain, pluginData string, warmup, rounds int, sockets []string) error {
	// One CSR for every mint: building it is the client's work, not the server's.
	csr, err := newCSR(trustDomain)
	if err != nil {
		return err
	}
	samples := make([][]int64, len(sockets))
	var targets []target
	for i, socket := range sockets {
		conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		client := svidv1.NewSVIDClient(conn)
		targets = append(targets, func(measured bool) error {
			elapsed, err := mint(client, csr)
			if err != nil {
				return fmt.Errorf("server %d (%s): %w", i+1, socket, err)
			}
			if measured {
				samples[i] = append(samples[i], elapsed.Nanoseconds())
			}
			return nil
		})
	}
	var stages *pluginStages
	if pluginData != "" {
		if stages, err = newPluginStages(trustDomain, pluginData); err != nil {
			return err
		}
		targets = append(targets, stages.sign)
	}
	for round := 0; round < warmup+rounds; round++ {
		for offset := range targets {
			if err := targets[(round+offset)%len(targets)](round >= warmup); err != nil {
				return err
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		Nanoseconds [][]int64          `json:"nanoseconds"`
		Plugin      map[string][]int64 `json:"plugin,omitempty"`
	}{samples, stages.samplesOrNil()})
}

func mint(client svidv1.SVIDClient, csr []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	started := time.Now()
	response, err := client.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csr})
	elapsed := time.Since(started)
	if err != nil {
		return 0, err
	}
	if len(response.GetSvid().GetCertChain()) == 0 {
		return 0, fmt.Errorf("the server answered without a certificate")
	}
	return elapsed, nil
}

func newCSR(trustDomain string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id := &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/bench/mint"}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
}
