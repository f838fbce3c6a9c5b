package client

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Protocol constants (proto/PROTOCOL.md).
const (
	ProtocolVersion     = 1
	MaxLine             = 4096
	DefaultMaxInflight  = 256
	maxIDLen            = 64
	hexDigits           = "0123456789ABCDEF"
	maxResponseLineSize = 16 << 20
)

// Escape writes every byte outside 0x21-0x7E, and every '%', as %XX (upper-case hex).
func Escape(s string) string { return escapeExtra(s, "") }

func escapeExtra(s, extra string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '%' || strings.IndexByte(extra, c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Unescape decodes the %XX form. It rejects malformed escapes and raw bytes outside 0x21-0x7E.
// Invalid UTF-8 in the decoded bytes is kept as is.
func Unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x21 || s[i] > 0x7e {
				return "", fmt.Errorf("raw byte 0x%02x in escaped value", s[i])
			}
		}
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", fmt.Errorf("truncated %%-escape at offset %d", i)
			}
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("bad %%-escape at offset %d", i)
			}
			out = append(out, h<<4|l)
			i += 2
			continue
		}
		if c < 0x21 || c > 0x7e {
			return "", fmt.Errorf("raw byte 0x%02x in escaped value", c)
		}
		out = append(out, c)
	}
	return string(out), nil
}

// ValidID reports whether s may be used as a request id.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Option is one key=value request option, kept in order.
type Option struct{ Key, Value string }

// EncodeRequest builds one request line including the LF. Arguments are escaped (also '='),
// option values are escaped. It fails for lines over MaxLine bytes.
func EncodeRequest(verb string, args []string, opts []Option, id string) ([]byte, error) {
	parts := []string{verb}
	for _, a := range args {
		parts = append(parts, escapeExtra(a, "="))
	}
	for _, o := range opts {
		if !validKey(o.Key) {
			return nil, fmt.Errorf("mxresolved: bad option key %q", o.Key)
		}
		parts = append(parts, o.Key+"="+Escape(o.Value))
	}
	if id != "" {
		if !ValidID(id) {
			return nil, fmt.Errorf("mxresolved: bad request id %q", id)
		}
		parts = append(parts, "id="+id)
	}
	line := strings.Join(parts, " ")
	if len(line) > MaxLine {
		return nil, fmt.Errorf("mxresolved: request line is %d bytes; the protocol allows %d", len(line), MaxLine)
	}
	return []byte(line + "\n"), nil
}

// Field is one decoded key=value field of a response line.
type Field struct{ Key, Value string }

// Reply is one parsed response line. Status is "ok", "err", "entry" or "json".
// For a final line of a multi-line response, Entries holds the entry lines.
type Reply struct {
	Status  string
	ID      string // "" when absent
	HasID   bool
	Fields  []Field // without the id
	JSON    map[string]interface{}
	Entries []*Reply
}

// Get returns the first value of key.
func (r *Reply) Get(key string) (string, bool) {
	for _, f := range r.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// GetAll returns every value of a (repeatable) key, in order.
func (r *Reply) GetAll(key string) []string {
	var out []string
	for _, f := range r.Fields {
		if f.Key == key {
			out = append(out, f.Value)
		}
	}
	return out
}

// Map returns the fields as a map (first value wins for repeated keys).
func (r *Reply) Map() map[string]string {
	m := map[string]string{}
	for _, f := range r.Fields {
		if _, ok := m[f.Key]; !ok {
			m[f.Key] = f.Value
		}
	}
	return m
}

// OK reports whether the reply is a success.
func (r *Reply) OK() bool {
	if r.Status == "json" {
		v, _ := r.JSON["ok"].(bool)
		return v
	}
	return r.Status == "ok"
}

func (r *Reply) final() bool { return r.Status != "entry" }

// ParseLine parses one response line (without LF; a trailing CR is tolerated).
func ParseLine(line string) (*Reply, error) {
	line = strings.TrimSuffix(line, "\r")
	if strings.HasPrefix(line, "{") {
		var m map[string]interface{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return nil, &ProtocolError{Message: "bad JSON response: " + err.Error()}
		}
		r := &Reply{Status: "json", JSON: m}
		if id, ok := m["id"].(string); ok {
			r.ID, r.HasID = id, true
		}
		return r, nil
	}
	if !utf8.ValidString(line) {
		return nil, &ProtocolError{Message: "response line is not UTF-8"}
	}
	parts := strings.Split(line, " ")
	r := &Reply{Status: parts[0]}
	if r.Status != "ok" && r.Status != "err" && r.Status != "entry" {
		return nil, &ProtocolError{Message: fmt.Sprintf("unexpected response line %.80q", line)}
	}
	for i, p := range parts[1:] {
		eq := strings.IndexByte(p, '=')
		if eq < 0 || !validKey(p[:eq]) {
			return nil, &ProtocolError{Message: fmt.Sprintf("malformed field %.40q in response", p)}
		}
		v, err := Unescape(p[eq+1:])
		if err != nil {
			return nil, &ProtocolError{Message: "malformed value for " + p[:eq] + ": " + err.Error()}
		}
		if i == 0 && p[:eq] == "id" {
			r.ID, r.HasID = v, true
			continue
		}
		r.Fields = append(r.Fields, Field{p[:eq], v})
	}
	return r, nil
}

func atoiField(r *Reply, key string) (int, error) {
	v, ok := r.Get(key)
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, &ProtocolError{Message: fmt.Sprintf("%s=%q is not an integer", key, v)}
	}
	return n, nil
}

func parseTarget(v string) (Target, error) {
	parts := strings.Split(v, ",")
	if len(parts) < 2 {
		return Target{}, &ProtocolError{Message: fmt.Sprintf("malformed target %q", v)}
	}
	port, err := strconv.Atoi(parts[1])
	if err != nil || port < 0 || port > 65535 {
		return Target{}, &ProtocolError{Message: fmt.Sprintf("malformed target port in %q", v)}
	}
	addrs := append([]string{}, parts[2:]...)
	return Target{Host: parts[0], Port: port, Addresses: addrs}, nil
}

var lifetimeKeys = [3]string{"well_known_max_age", "srv_ttl", "address_ttl"}

func (l *Lifetimes) fields() [3]**int {
	return [3]**int{&l.WellKnownMaxAge, &l.SRVTTL, &l.AddressTTL}
}

func lifetimesFromFields(r *Reply) (Lifetimes, error) {
	var l Lifetimes
	for i, p := range l.fields() {
		if v, ok := r.Get(lifetimeKeys[i]); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return l, &ProtocolError{Message: fmt.Sprintf("%s=%q is not an integer", lifetimeKeys[i], v)}
			}
			*p = &n
		}
	}
	return l, nil
}

func lifetimesFromJSON(m map[string]interface{}) Lifetimes {
	var l Lifetimes
	lm, _ := m["lifetimes"].(map[string]interface{})
	for i, p := range l.fields() {
		if f, ok := lm[lifetimeKeys[i]].(float64); ok {
			n := int(f)
			*p = &n
		}
	}
	return l
}

func resolutionFromFields(r *Reply) (*Resolution, error) {
	need := func(k string) (string, error) {
		v, ok := r.Get(k)
		if !ok {
			return "", &ProtocolError{Message: "resolve answer lacks " + k + "="}
		}
		return v, nil
	}
	res := &Resolution{Trace: r.GetAll("trace")}
	var err error
	if res.ServerName, err = need("name"); err != nil {
		return nil, err
	}
	if res.HostHeader, err = need("host"); err != nil {
		return nil, err
	}
	if res.TLSServerName, err = need("tls_name"); err != nil {
		return nil, err
	}
	if res.Step, err = need("step"); err != nil {
		return nil, err
	}
	res.Source, _ = r.Get("source")
	if res.Source == "" {
		res.Source = "network"
	}
	if res.ExpiresIn, err = atoiField(r, "ttl"); err != nil {
		return nil, err
	}
	if res.Lifetimes, err = lifetimesFromFields(r); err != nil {
		return nil, err
	}
	if sni, _ := r.Get("sni"); sni != "" {
		s := sni
		res.SNI = &s
	}
	for _, t := range r.GetAll("target") {
		tg, err := parseTarget(t)
		if err != nil {
			return nil, err
		}
		res.Targets = append(res.Targets, tg)
	}
	if res.Trace == nil {
		res.Trace = []string{}
	}
	return res, nil
}

func jsonString(m map[string]interface{}, k string) string {
	s, _ := m[k].(string)
	return s
}

func jsonInt(m map[string]interface{}, k string) int {
	f, _ := m[k].(float64)
	return int(f)
}

func resolutionFromJSON(m map[string]interface{}) (*Resolution, error) {
	res := &Resolution{
		ServerName: jsonString(m, "server_name"), HostHeader: jsonString(m, "host_header"),
		TLSServerName: jsonString(m, "tls_server_name"), Step: jsonString(m, "step"),
		Source: jsonString(m, "source"), ExpiresIn: jsonInt(m, "expires_in"), Trace: []string{},
		Lifetimes: lifetimesFromJSON(m),
	}
	if res.ServerName == "" || res.HostHeader == "" || res.TLSServerName == "" {
		return nil, &ProtocolError{Message: "malformed JSON resolution"}
	}
	if s, ok := m["sni"].(string); ok && s != "" {
		res.SNI = &s
	}
	if ts, ok := m["targets"].([]interface{}); ok {
		for _, t := range ts {
			tm, ok := t.(map[string]interface{})
			if !ok {
				return nil, &ProtocolError{Message: "malformed JSON target"}
			}
			tg := Target{Host: jsonString(tm, "host"), Port: jsonInt(tm, "port"), Addresses: []string{}}
			if as, ok := tm["addresses"].([]interface{}); ok {
				for _, a := range as {
					if s, ok := a.(string); ok {
						tg.Addresses = append(tg.Addresses, s)
					}
				}
			}
			res.Targets = append(res.Targets, tg)
		}
	}
	if tr, ok := m["trace"].([]interface{}); ok {
		for _, t := range tr {
			if s, ok := t.(string); ok {
				res.Trace = append(res.Trace, s)
			}
		}
	}
	return res, nil
}

// ResolutionFromReply converts a resolve reply (text or JSON) to a Resolution, or the typed error.
func ResolutionFromReply(r *Reply) (*Resolution, error) {
	if !r.OK() {
		return nil, ErrorFromReply(r, true)
	}
	if r.Status == "json" {
		return resolutionFromJSON(r.JSON)
	}
	return resolutionFromFields(r)
}

// ErrorFromReply returns the error for an err reply: *ResolveError for resolution codes,
// *ProtocolError for protocol codes.
func ErrorFromReply(r *Reply, resolutionVerb bool) error {
	var code, msg, name, source string
	var hasName bool
	var expires int
	var trace []string
	if r.Status == "json" {
		e, _ := r.JSON["error"].(map[string]interface{})
		code, msg = jsonString(e, "code"), jsonString(e, "message")
		name = jsonString(r.JSON, "server_name")
		_, hasName = r.JSON["server_name"]
		source = jsonString(r.JSON, "source")
		expires = jsonInt(r.JSON, "expires_in")
		if tr, ok := r.JSON["trace"].([]interface{}); ok {
			for _, t := range tr {
				if s, ok := t.(string); ok {
					trace = append(trace, s)
				}
			}
		}
	} else {
		code, _ = r.Get("code")
		msg, _ = r.Get("msg")
		name, hasName = r.Get("name")
		source, _ = r.Get("source")
		expires, _ = atoiField(r, "ttl")
		trace = r.GetAll("trace")
	}
	if code != "" && !protocolCodes[code] && (resolutionVerb || hasName) {
		return &ResolveError{Code: code, Message: msg, ServerName: name, Source: source, ExpiresIn: expires, Trace: trace}
	}
	if msg == "" {
		msg = "request failed"
	}
	return &ProtocolError{Code: code, Message: msg}
}
