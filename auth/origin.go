package auth

import (
	"fmt"
	"net/url"
	"strings"
)

// Origins is an allow-list of request origins. A nil *Origins allows every
// origin.
type Origins struct {
	exact    []string // "https://app.example.com"
	suffixes []string // "https://*.example.com" kept as "https://" + ".example.com"
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
		u, err := url.Parse(item)
		if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("auth: allowed origin %q is not scheme://host[:port]", item)
		}
		if host, ok := strings.CutPrefix(u.Host, "*."); ok {
			if strings.Contains(host, "*") {
				return nil, fmt.Errorf("auth: allowed origin %q: only a leading *. is a wildcard", item)
			}
			o.suffixes = append(o.suffixes, u.Scheme+"://\x00."+host)
			continue
		}
		if strings.Contains(u.Host, "*") {
			return nil, fmt.Errorf("auth: allowed origin %q: only a leading *. is a wildcard", item)
		}
		o.exact = append(o.exact, u.Scheme+"://"+u.Host)
	}
	return o, nil
}

// Allowed reports whether a request with the Origin header origin may
// connect. A request without an Origin header is allowed: browsers always
// send one with a WebSocket handshake, and the check exists to stop
// browsers on other sites, not other programs (which a token stops).
func (o *Origins) Allowed(origin string) bool {
	if o == nil || origin == "" {
		return true
	}
	origin = strings.ToLower(origin)
	for _, e := range o.exact {
		if origin == e {
			return true
		}
	}
	for _, s := range o.suffixes {
		scheme, suffix, _ := strings.Cut(s, "\x00")
		if rest, ok := strings.CutPrefix(origin, scheme); ok && strings.HasSuffix(rest, suffix) && len(rest) > len(suffix) {
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
	all := append([]string(nil), o.exact...)
	for _, s := range o.suffixes {
		all = append(all, strings.Replace(s, "\x00.", "*.", 1))
	}
	return strings.Join(all, ",")
}
