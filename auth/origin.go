package auth

import (
	"fmt"
	"net/url"
	"strings"
)

// Origins is an allow-list of request origins. A nil *Origins allows every
// origin.
type Origins struct {
	exact    []origin // "https://app.example.com"
	suffixes []origin // "https://*.example.com", host kept as ".example.com"
}

// origin is a parsed origin: scheme, host name and port, lower case. The
// port is "" when the origin names none.
type origin struct {
	scheme, host, port string
}

// parseOrigin parses s, lower-cased, as scheme://host[:port] and nothing
// else: no user info, path, query or fragment, and a host of letters,
// digits, '-' and '.' (or an IPv6 literal in brackets), with a port of
// digits. wildcard lets the host start with "*.".
func parseOrigin(s string, wildcard bool) (origin, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.User != nil || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return origin{}, false
	}
	o := origin{scheme: u.Scheme, host: u.Hostname(), port: u.Port()}
	if strings.HasSuffix(u.Host, ":") {
		return origin{}, false // an empty port
	}
	for _, c := range o.port {
		if c < '0' || c > '9' {
			return origin{}, false
		}
	}
	host := o.host
	if wildcard {
		host = strings.TrimPrefix(host, "*.")
	}
	if strings.HasPrefix(u.Host, "[") {
		return o, strings.Contains(host, ":") // an IPv6 literal, which url.Parse checked
	}
	if host == "" || host[0] == '.' || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return origin{}, false
	}
	for _, c := range host {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return origin{}, false
		}
	}
	return o, true
}

func (o origin) String() string {
	s := o.scheme + "://"
	if strings.Contains(o.host, ":") {
		s += "[" + o.host + "]"
	} else {
		s += o.host
	}
	if o.port != "" {
		s += ":" + o.port
	}
	return s
}

// ParseOrigins parses a comma-separated allow-list: origins as browsers
// send them (scheme://host[:port]), where a host may start with "*." to
// allow its subdomains. "" and "*" allow every origin (nil, nil).
func ParseOrigins(list string) (*Origins, error) {
	list = strings.TrimSpace(list)
	if list == "" || list == "*" {
		return nil, nil
	}
	o := &Origins{}
	for item := range strings.SplitSeq(list, ",") {
		item = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(item), "/"))
		if strings.Count(item, "*") > 1 || strings.Contains(item, "*") && !strings.Contains(item, "://*.") {
			return nil, fmt.Errorf("auth: allowed origin %q: only a leading *. is a wildcard", item)
		}
		p, ok := parseOrigin(item, true)
		if !ok {
			return nil, fmt.Errorf("auth: allowed origin %q is not scheme://host[:port]", item)
		}
		if domain, ok := strings.CutPrefix(p.host, "*"); ok {
			p.host = domain // ".example.com"
			o.suffixes = append(o.suffixes, p)
			continue
		}
		o.exact = append(o.exact, p)
	}
	return o, nil
}

// Allowed reports whether a request with the Origin header origin may
// connect. A request without an Origin header is allowed: browsers always
// send one with a WebSocket handshake, and the check exists to stop
// browsers on other sites, not other programs (which a token stops).
//
// The origin is parsed, and its scheme, host and port compared with each
// entry's: a string that is not an origin as browsers send it (with a path,
// a query, user info, a backslash) matches nothing.
func (o *Origins) Allowed(s string) bool {
	if o == nil || s == "" {
		return true
	}
	p, ok := parseOrigin(strings.ToLower(s), false)
	if !ok {
		return false
	}
	for _, e := range o.exact {
		if p == e {
			return true
		}
	}
	for _, e := range o.suffixes {
		if p.scheme == e.scheme && p.port == e.port && strings.HasSuffix(p.host, e.host) && len(p.host) > len(e.host) {
			return true
		}
	}
	return false
}

// String returns the list as configured, normalized.
func (o *Origins) String() string {
	if o == nil {
		return "*"
	}
	var all []string
	for _, e := range o.exact {
		all = append(all, e.String())
	}
	for _, e := range o.suffixes {
		e.host = "*" + e.host
		all = append(all, e.String())
	}
	return strings.Join(all, ",")
}
