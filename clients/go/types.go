package client

// Target is one place to connect to: try Addresses in order (IPv6 first) on Port.
// Host is the SRV target or hostname, or the bare IP for IP literals.
type Target struct {
	Host      string   `json:"host"`
	Port      int      `json:"port"`
	Addresses []string `json:"addresses"`
}

// Resolution is a successful answer.
type Resolution struct {
	ServerName    string    `json:"server_name"`
	Targets       []Target  `json:"targets"`
	HostHeader    string    `json:"host_header"`     // the HTTP Host header to send
	TLSServerName string    `json:"tls_server_name"` // the name/IP the certificate must be valid for
	SNI           *string   `json:"sni"`             // nil: send no SNI (IP literals)
	Step          string    `json:"step"`            // "1", "2", "3.1" ... "6"
	Source        string    `json:"source"`          // "network", "cache" or "stale"
	ExpiresIn     int       `json:"expires_in"`      // seconds (0 when stale)
	Trace         []string  `json:"trace"`
	Lifetimes     Lifetimes `json:"lifetimes"`
}

// Lifetimes is how long each ingredient of an answer was good for when fetched, in seconds;
// nil when that ingredient was not used (or the well-known's cache headers said nothing).
// ExpiresIn is derived from them (docs/caching.md).
type Lifetimes struct {
	WellKnownMaxAge *int `json:"well_known_max_age"`
	SRVTTL          *int `json:"srv_ttl"`
	AddressTTL      *int `json:"address_ttl"`
}

// Reresolution is the answer to Reresolve: whether a fresh background resolution started, or
// else how many seconds until the name may be re-resolved again.
type Reresolution struct {
	ServerName string
	Started    bool
	RetryAfter int
}

// CacheEntry is one show-cache entry. Resolution is set for Status "ok"; Code and Message
// for cached failures. Fields holds every raw field.
type CacheEntry struct {
	ServerName string
	Status     string
	ExpiresIn  int
	Stale      bool
	Resolution *Resolution
	Code       string
	Message    string
	Fields     []Field
}

func cacheEntryFromReply(e *Reply) CacheEntry {
	m := e.Map()
	ce := CacheEntry{ServerName: m["name"], Status: m["status"], Stale: m["stale"] == "yes",
		Code: m["code"], Message: m["msg"], Fields: e.Fields}
	if ce.Status == "" {
		ce.Status = "ok"
	}
	ce.ExpiresIn, _ = atoiField(e, "ttl")
	if _, ok := m["host"]; ok && ce.Status == "ok" {
		r := &Reply{Status: "ok", Fields: append(append([]Field{}, e.Fields...), Field{"source", "cache"})}
		if res, err := resolutionFromFields(r); err == nil {
			ce.Resolution = res
		}
	}
	return ce
}
