package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	client "mxresolved.example/client"
)

// Example shows how a worker resolves a server name and opens the federation connection:
// addresses in order, the Host header, SNI (none for IP literals) and certificate
// verification against TLSServerName. It needs a running daemon, so it has no Output
// comment: it is compiled by `go test` but not run.
func Example() {
	c := client.New(client.Options{}) // $MXRESOLVED_SOCKET or ./.mxresolved/mxresolved.sock
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	res, err := c.Resolve(ctx, "matrix.org")
	if errors.Is(err, client.ErrDNS) {
		fmt.Println("temporary DNS trouble, retry later:", err)
		return
	} else if err != nil {
		fmt.Println("cannot federate:", err)
		return
	}
	cfg := &tls.Config{ServerName: res.TLSServerName} // certificate must be valid for this name/IP
	// Go sends no SNI when ServerName is an IP address, which is exactly res.SNI == nil.
	for _, t := range res.Targets {
		for _, addr := range t.Addresses {
			d := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(addr, strconv.Itoa(t.Port)), cfg)
			if err != nil {
				continue
			}
			fmt.Fprintf(conn, "GET /_matrix/key/v2/server HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", res.HostHeader)
			conn.Close()
			return
		}
	}
	fmt.Println("no target reachable")
}

// ExampleClient_Resolve shows typed errors.
func ExampleClient_Resolve() {
	c := client.New(client.Options{Timeout: 5 * time.Second})
	defer c.Close()
	_, err := c.Resolve(context.Background(), "10.1.2.3")
	var re *client.ResolveError
	if errors.As(err, &re) && errors.Is(err, client.ErrAddressDenied) {
		fmt.Println(re.Code) // address_denied: private range refused by the daemon's policy
	}
}
