package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// testWorld is the loopback test world the clients' step brings up (MXRESOLVED_TEST_WORLD:
// its world.json), with the fake remote homeserver behind hs.test's well-known + SRV.
type testWorld struct {
	CAFile        string `json:"ca_file"`
	HomeserverIP  string `json:"homeserver_ip"`
	HomeserverLog string `json:"homeserver_log"`
}

type remoteRequest struct {
	SNI  string `json:"sni"`
	Host string `json:"host"`
	Port int    `json:"port"`
	URI  string `json:"uri"`
}

func loadWorld(t *testing.T) (testWorld, *tls.Config) {
	p := os.Getenv("MXRESOLVED_TEST_WORLD")
	if p == "" {
		t.Skip("MXRESOLVED_TEST_WORLD not set (no test world)")
	}
	var w testWorld
	b, err := os.ReadFile(p)
	if err == nil {
		err = json.Unmarshal(b, &w)
	}
	if err != nil || w.HomeserverLog == "" {
		t.Fatalf("world.json %s: %v (homeserver_log %q)", p, err, w.HomeserverLog)
	}
	pem, err := os.ReadFile(w.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return w, &tls.Config{RootCAs: roots}
}

func remoteRequests(t *testing.T, w testWorld) []remoteRequest {
	b, err := os.ReadFile(w.HomeserverLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []remoteRequest
	for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r remoteRequest
		if ln != "" && json.Unmarshal([]byte(ln), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

func getVersion(t *testing.T, f *Federation) (*http.Response, string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "matrix-federation://hs.test/_matrix/federation/v1/version", nil)
	resp, err := (&http.Client{Transport: f}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func TestFederationRoundTripperReachesTheSRVTarget(t *testing.T) {
	w, tlsConfig := loadWorld(t)
	d := startDaemon(t)
	f := NewFederation(d.socket, nil)
	f.TLSConfig = tlsConfig
	defer f.CloseIdleConnections()

	rs, err := f.ResolveServer(context.Background(), "hs.test")
	want := ResolutionResult{Destination: w.HomeserverIP + ":8450", Host: "hs-delegated.test", TLSServerName: "hs-delegated.test"}
	if err != nil || len(rs) != 1 || rs[0] != want {
		t.Fatalf("ResolveServer(hs.test) = %+v, %v; want [%+v]", rs, err, want)
	}
	before := len(remoteRequests(t, w))
	resp, body, err := getVersion(t, f)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(body, "testworld-homeserver") {
		t.Fatalf("GET through the RoundTripper: %v %v %q", resp, err, body)
	}
	got := remoteRequests(t, w)[before:]
	if len(got) != 1 || got[0] != (remoteRequest{SNI: "hs-delegated.test", Host: "hs-delegated.test", Port: 8450,
		URI: "/_matrix/federation/v1/version"}) {
		t.Fatalf("the fake homeserver saw %+v", got)
	}
	if _, err := f.ResolveServer(context.Background(), "bad name"); !errors.Is(err, ErrInvalidServerName) {
		t.Fatalf("a resolution failure is returned, not sent to a fallback: %v", err)
	}
}

func TestFederationFallbackWhenTheDaemonIsUnreachable(t *testing.T) {
	w, tlsConfig := loadWorld(t)
	missing := t.TempDir() + "/absent.sock"
	var asked []string
	f := NewFederation(missing, func(ctx context.Context, serverName string) ([]ResolutionResult, error) {
		asked = append(asked, serverName) // as gomatrixserverlib's own resolver would answer
		return []ResolutionResult{{Destination: w.HomeserverIP + ":8450", Host: "hs-delegated.test", TLSServerName: "hs-delegated.test"}}, nil
	})
	f.TLSConfig = tlsConfig
	defer f.CloseIdleConnections()
	before := len(remoteRequests(t, w))
	resp, body, err := getVersion(t, f)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(body, "testworld-homeserver") {
		t.Fatalf("GET through the fallback: %v %v %q", resp, err, body)
	}
	if len(asked) != 1 || asked[0] != "hs.test" || len(remoteRequests(t, w)) != before+1 {
		t.Fatalf("fallback asked for %v; fake homeserver requests %d -> %d", asked, before, len(remoteRequests(t, w)))
	}

	nofb := NewFederation(missing, nil)
	start := time.Now()
	_, _, err = getVersion(t, nofb)
	if !errors.Is(err, ErrNoFallback) || !errors.Is(err, ErrDaemonUnavailable) {
		t.Fatalf("without a fallback: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("failing without a fallback took %v; it must not wait", took)
	}
}
