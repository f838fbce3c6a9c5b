package client

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

type vectorFile struct {
	Requests       []requestVector   `json:"requests"`
	Codec          []codecVector     `json:"codec"`
	InvalidEncoded []string          `json:"invalid_encoded"`
	Parse          []parseVector     `json:"parse"`
	InvalidLines   []string          `json:"invalid_lines"`
	Families       map[string]string `json:"error_families"`
	ProtocolCodes  []string          `json:"protocol_error_codes"`
}

type codecVector struct {
	Decoded    string `json:"decoded"`
	Encoded    string `json:"encoded"`
	DecodeOnly bool   `json:"decode_only"`
}

type parseVector struct {
	Line       string      `json:"line"`
	Status     string      `json:"status"`
	ID         *string     `json:"id"`
	Fields     [][2]string `json:"fields"`
	Resolution *Resolution `json:"resolution"`
	Error      *struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		ServerName string `json:"server_name"`
		Family     string `json:"family"`
	} `json:"error"`
}

type requestVector struct {
	Name     string                 `json:"name"`
	Request  string                 `json:"request"`
	Encoding string                 `json:"encoding"`
	Then     string                 `json:"then"`
	Closes   bool                   `json:"closes"`
	Expect   map[string]interface{} `json:"expect"`
}

func loadVectors(t *testing.T) *vectorFile {
	t.Helper()
	path := os.Getenv("MXRESOLVED_VECTORS")
	if path == "" {
		path = filepath.Join("..", "..", "proto", "vectors.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading vectors: %v", err)
	}
	var v vectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("parsing vectors: %v", err)
	}
	return &v
}

func TestCodecVectors(t *testing.T) {
	v := loadVectors(t)
	if len(v.Codec) == 0 {
		t.Fatal("no codec vectors")
	}
	for _, c := range v.Codec {
		got, err := Unescape(c.Encoded)
		if err != nil || got != c.Decoded {
			t.Errorf("Unescape(%q) = %q, %v; want %q", c.Encoded, got, err, c.Decoded)
		}
		if !c.DecodeOnly {
			if e := Escape(c.Decoded); e != c.Encoded {
				t.Errorf("Escape(%q) = %q; want %q", c.Decoded, e, c.Encoded)
			}
		}
	}
	for _, s := range v.InvalidEncoded {
		if _, err := Unescape(s); err == nil {
			t.Errorf("Unescape(%q) accepted an invalid encoding", s)
		}
	}
}

func TestParseVectors(t *testing.T) {
	v := loadVectors(t)
	for _, p := range v.Parse {
		r, err := ParseLine(p.Line)
		if err != nil {
			t.Errorf("ParseLine(%q): %v", p.Line, err)
			continue
		}
		if r.Status != p.Status {
			t.Errorf("%q: status %q want %q", p.Line, r.Status, p.Status)
		}
		if (p.ID == nil) == r.HasID || (p.ID != nil && *p.ID != r.ID) {
			t.Errorf("%q: id %q/%v want %v", p.Line, r.ID, r.HasID, p.ID)
		}
		if p.Fields != nil {
			var got [][2]string
			for _, f := range r.Fields {
				got = append(got, [2]string{f.Key, f.Value})
			}
			if len(got) != 0 || len(p.Fields) != 0 {
				if !reflect.DeepEqual(got, p.Fields) {
					t.Errorf("%q: fields %v want %v", p.Line, got, p.Fields)
				}
			}
		}
		if p.Resolution != nil {
			res, err := ResolutionFromReply(r)
			if err != nil {
				t.Errorf("%q: %v", p.Line, err)
			} else if !reflect.DeepEqual(res, p.Resolution) {
				t.Errorf("%q: resolution\n%+v\nwant\n%+v", p.Line, res, p.Resolution)
			}
		}
		if p.Error != nil {
			err := ErrorFromReply(r, true)
			re, ok := err.(*ResolveError)
			if !ok {
				t.Errorf("%q: %T, want *ResolveError", p.Line, err)
				continue
			}
			if re.Code != p.Error.Code || re.Message != p.Error.Message || re.ServerName != p.Error.ServerName || re.Family() != p.Error.Family {
				t.Errorf("%q: %+v want %+v", p.Line, re, p.Error)
			}
		}
	}
	for _, l := range v.InvalidLines {
		if _, err := ParseLine(l); err == nil {
			t.Errorf("ParseLine(%q) accepted an invalid line", l)
		}
	}
}

func TestErrorFamilies(t *testing.T) {
	v := loadVectors(t)
	for code, fam := range v.Families {
		e := &ResolveError{Code: code}
		if e.Family() != fam {
			t.Errorf("%s: family %s want %s", code, e.Family(), fam)
		}
	}
	for _, code := range v.ProtocolCodes {
		r, _ := ParseLine("err code=" + code + " msg=x")
		if _, ok := ErrorFromReply(r, true).(*ProtocolError); !ok {
			t.Errorf("%s should be a ProtocolError", code)
		}
	}
}

func TestEncodeRequest(t *testing.T) {
	b, err := EncodeRequest("resolve", []string{"bad name"}, []Option{{"cache", "no"}}, "x1")
	if err != nil || string(b) != "resolve bad%20name cache=no id=x1\n" {
		t.Errorf("got %q %v", b, err)
	}
	b, _ = EncodeRequest("resolve", []string{"a=b%"}, nil, "")
	if string(b) != "resolve a%3Db%25\n" {
		t.Errorf("got %q", b)
	}
	if _, err := EncodeRequest("ping", nil, nil, "bad id"); err == nil {
		t.Error("bad id accepted")
	}
	long := make([]byte, 4088)
	for i := range long {
		long[i] = 'd'
	}
	if b, err := EncodeRequest("resolve", []string{string(long)}, nil, ""); err != nil || len(b) != 4097 {
		t.Errorf("4096-byte line: %v", err)
	}
	if _, err := EncodeRequest("resolve", []string{string(long) + "x"}, nil, ""); err == nil {
		t.Error("4097-byte line accepted")
	}
}
