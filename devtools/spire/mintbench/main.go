// Command mintbench times the SVID hot path for the benchmarks, in one of two modes.
//
// Minting: X.509-SVIDs through spire-server's API (svid v1 MintX509SVID over each server's Unix
// socket), so that a benchmark measures the server and its KeyManager rather than a CLI process
// start. Servers are visited in interleaved rounds, their order rotating each round, so that
// machine noise reaches every server alike.
//
//	mintbench -trust-domain example.org [-warmup 10] [-rounds 200] api1.sock api2.sock ...
//
// Output (stdout, JSON): {"nanoseconds": [[server 1's mints...], [server 2's mints...], ...]}.
//
// Signing through the plugin alone (no SPIRE): the plugin's SignData, called in this process, with
// the time of its HTTP round trip to the app and the app's own time (devhost's Server-Timing).
//
//	mintbench -trust-domain example.org -plugin-app-url http://127.0.0.1:7071 -plugin-server-name s
//
// Output: {"sign": [...], "round_trip": [...], "function": [...]}, nanoseconds per call.
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
	appURL := flag.String("plugin-app-url", "", "sign through the plugin against the app at this URL instead of minting")
	serverName := flag.String("plugin-server-name", "", "the plugin's server_name when signing through it")
	flag.Parse()
	var err error
	switch {
	case *trustDomain != "" && *appURL != "" && flag.NArg() == 0:
		err = signThroughPlugin(*trustDomain, *appURL, *serverName, *warmup, *rounds)
	case *trustDomain != "" && *appURL == "" && flag.NArg() > 0:
		err = run(*trustDomain, *warmup, *rounds, flag.Args())
	default:
		fmt.Fprintln(os.Stderr, "usage: mintbench -trust-domain TD [-warmup N] [-rounds N] (SOCKET... | -plugin-app-url URL [-plugin-server-name NAME])")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mintbench:", err)
		os.Exit(1)
	}
}

func run(trustDomain string, warmup, rounds int, sockets []string) error {
	clients := make([]svidv1.SVIDClient, len(sockets))
	for i, socket := range sockets {
		conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = svidv1.NewSVIDClient(conn)
	}
	// One CSR for every mint: building it is the client's work, not the server's.
	csr, err := newCSR(trustDomain)
	if err != nil {
		return err
	}
	samples := make([][]int64, len(sockets))
	for round := 0; round < warmup+rounds; round++ {
		for offset := range clients {
			server := (round + offset) % len(clients)
			elapsed, err := mint(clients[server], csr)
			if err != nil {
				return fmt.Errorf("server %d (%s): %w", server+1, sockets[server], err)
			}
			if round >= warmup {
				samples[server] = append(samples[server], elapsed.Nanoseconds())
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string][][]int64{"nanoseconds": samples})
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
