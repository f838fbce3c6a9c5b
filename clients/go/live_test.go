package client

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rawConn speaks the wire protocol directly, for request vectors.
type rawConn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(path string) (*rawConn, error) {
	nc, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{nc: nc, br: bufio.NewReaderSize(nc, 1<<16)}, nil
}

func (r *rawConn) exchange(data []byte) ([]string, error) {
	_ = r.nc.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := r.nc.Write(data); err != nil {
		return nil, err
	}
	var lines []string
	for {
		s, err := r.br.ReadString('\n')
		if err != nil {
			return lines, fmt.Errorf("no final response line (got %q): %v", lines, err)
		}
		s = s[:len(s)-1]
		lines = append(lines, s)
		if !strings.HasPrefix(s, "entry") {
			return lines, nil
		}
	}
}

func vectorBytes(v requestVector) []byte {
	if v.Encoding == "latin1" {
		var b []byte
		for _, r := range v.Request {
			b = append(b, byte(r))
		}
		return append(b, '\n')
	}
	return []byte(v.Request + "\n")
}

func jsonSubset(want, got interface{}, where string) error {
	if wm, ok := want.(map[string]interface{}); ok {
		gm, ok := got.(map[string]interface{})
		if !ok {
			return fmt.Errorf("%s: want object, got %v", where, got)
		}
		for k, v := range wm {
			g, ok := gm[k]
			if !ok {
				return fmt.Errorf("%s: member %q missing", where, k)
			}
			if err := jsonSubset(v, g, where+"."+k); err != nil {
				return err
			}
		}
		return nil
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Errorf("%s: want %v, got %v", where, want, got)
	}
	return nil
}

func checkVector(v requestVector, lines []string) error {
	final := lines[len(lines)-1]
	ctx := fmt.Sprintf("vector %s: %.80q -> %.300q", v.Name, v.Request, final)
	if strings.Contains(final, "\r") {
		return fmt.Errorf("%s: CR in response", ctx)
	}
	r, err := ParseLine(final)
	if err != nil {
		return fmt.Errorf("%s: %v", ctx, err)
	}
	exp := v.Expect
	status, _ := exp["status"].(string)
	if exp["format"] == "json" {
		if r.Status != "json" {
			return fmt.Errorf("%s: want a JSON object", ctx)
		}
		if (status == "ok") != r.OK() {
			return fmt.Errorf("%s: ok mismatch", ctx)
		}
		if err := jsonSubset(exp["json_subset"], map[string]interface{}(r.JSON), ctx); exp["json_subset"] != nil && err != nil {
			return err
		}
		if jp, ok := exp["json_present"].([]interface{}); ok {
			for _, k := range jp {
				if _, ok := r.JSON[k.(string)]; !ok {
					return fmt.Errorf("%s: JSON member %v missing", ctx, k)
				}
			}
		}
		return nil
	}
	if r.Status != status {
		return fmt.Errorf("%s: status %s, want %s", ctx, r.Status, status)
	}
	m := r.Map()
	if r.HasID {
		m["id"] = r.ID
	}
	if fs, ok := exp["fields"].(map[string]interface{}); ok {
		for k, want := range fs {
			got, ok := m[k]
			if !ok || got != want.(string) {
				return fmt.Errorf("%s: %s=%q (present %v), want %q", ctx, k, got, ok, want)
			}
		}
	}
	if ps, ok := exp["present"].([]interface{}); ok {
		for _, k := range ps {
			if _, ok := m[k.(string)]; !ok {
				return fmt.Errorf("%s: field %v missing", ctx, k)
			}
		}
	}
	if as, ok := exp["absent"].([]interface{}); ok {
		for _, k := range as {
			if _, ok := m[k.(string)]; ok {
				return fmt.Errorf("%s: field %v must be absent", ctx, k)
			}
		}
	}
	if pats, ok := exp["field_patterns"].(map[string]interface{}); ok {
		for k, p := range pats {
			got, ok := m[k]
			if !ok || !regexp.MustCompile(p.(string)).MatchString(got) {
				return fmt.Errorf("%s: %s=%q does not match %v", ctx, k, got, p)
			}
		}
	}
	if ts, ok := exp["targets"].([]interface{}); ok {
		got := r.GetAll("target")
		if len(got) != len(ts) {
			return fmt.Errorf("%s: targets %v want %v", ctx, got, ts)
		}
		for i := range ts {
			if got[i] != ts[i].(string) {
				return fmt.Errorf("%s: targets %v want %v", ctx, got, ts)
			}
		}
	}
	if ff, ok := exp["first_field"].(string); ok {
		parts := strings.SplitN(final, " ", 3)
		if len(parts) < 2 || !strings.HasPrefix(parts[1], ff+"=") {
			return fmt.Errorf("%s: first field is not %s", ctx, ff)
		}
	}
	return nil
}

// runRequestVectors runs every request vector against the daemon at path.
func runRequestVectors(t *testing.T, path string) {
	t.Helper()
	vf := loadVectors(t)
	shared, err := dialRaw(path)
	if err != nil {
		t.Fatalf("connect %s: %v", path, err)
	}
	defer func() { shared.nc.Close() }()
	for _, v := range vf.Requests {
		if v.Closes {
			c, err := dialRaw(path)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			lines, err := c.exchange(vectorBytes(v))
			if err == nil {
				err = checkVector(v, lines)
			}
			if err == nil {
				_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, rerr := c.br.ReadByte(); rerr == nil {
					err = fmt.Errorf("vector %s: connection not closed", v.Name)
				}
			}
			c.nc.Close()
			if err != nil {
				t.Error(err)
			}
			continue
		}
		lines, err := shared.exchange(vectorBytes(v))
		if err == nil {
			err = checkVector(v, lines)
		}
		if err == nil && v.Then != "" {
			var fl []string
			fl, err = shared.exchange([]byte(v.Then + "\n"))
			if err == nil {
				if r, perr := ParseLine(fl[len(fl)-1]); perr != nil || !r.OK() {
					err = fmt.Errorf("vector %s: follow-up %q -> %q", v.Name, v.Then, fl)
				}
			}
		}
		if err != nil {
			t.Error(err)
			shared.nc.Close()
			if shared, err = dialRaw(path); err != nil {
				t.Fatalf("reconnect: %v", err)
			}
		}
	}
}

func TestLiveVectors(t *testing.T) {
	path := os.Getenv("MXRESOLVED_TEST_SOCKET")
	if path == "" {
		t.Skip("MXRESOLVED_TEST_SOCKET not set (no live daemon)")
	}
	runRequestVectors(t, path)
	c := New(Options{Path: path, Timeout: 10 * time.Second})
	defer c.Close()
	r, err := c.Resolve(context.Background(), "1.2.3.4")
	if err != nil || r.Step != "1" || r.SNI != nil || r.Targets[0].Port != 8448 {
		t.Fatalf("resolve 1.2.3.4: %+v %v", r, err)
	}
}
