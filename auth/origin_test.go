package auth_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
)

// TestParseOrigins: lists as the --allowed-origins flag takes them, and the
// normalized list (String) or the error.
func TestParseOrigins(t *testing.T) {
	for _, tc := range []struct {
		list, want string // want "" for an error
	}{
		{"", "*"},
		{"*", "*"},
		{"  * ", "*"},
		{"https://app.example.com", "https://app.example.com"},
		{"HTTPS://App.Example.COM/", "https://app.example.com"},
		{" https://a.example , http://localhost:3000 ", "https://a.example,http://localhost:3000"},
		{"https://*.example.com", "https://*.example.com"},
		{"https://*.example.com:8443,https://example.com", "https://example.com,https://*.example.com:8443"},
		{"http://[::1]:8080", "http://[::1]:8080"},

		{"app.example.com", ""},              // no scheme
		{"localhost:3000", ""},               // a scheme, no host
		{"https://", ""},                     // no host
		{"https://a.example/app", ""},        // a path
		{"https://a.example?x=1", ""},        // a query
		{"https://user@a.example", ""},       // user info
		{"https://a.*.example", ""},          // a wildcard not in front
		{"https://*.*.example", ""},          // two
		{"https://*example.com", ""},         // not "*."
		{"https://a.example,*", ""},          // "*" only alone
		{"https://a.example,,https://b", ""}, // an empty item
		{"https://a.example,https://%zz", ""},
	} {
		o, err := auth.ParseOrigins(tc.list)
		if tc.want == "" {
			assert.Error(t, err, "ParseOrigins(%q)", tc.list)
			continue
		}
		if assert.NoError(t, err, "ParseOrigins(%q)", tc.list) {
			assert.Equal(t, tc.want, o.String(), "ParseOrigins(%q)", tc.list)
		}
	}
}

// TestOriginsAllowed: exact origins match whole (scheme, host and port,
// whatever the case); "*." matches real subdomains only.
func TestOriginsAllowed(t *testing.T) {
	o, err := auth.ParseOrigins("https://app.example.com,http://localhost:3000,https://*.example.com")
	require.NoError(t, err)
	for _, tc := range []struct {
		origin string
		want   bool
	}{
		{"", true}, // no Origin: not a browser
		{"https://app.example.com", true},
		{"HTTPS://App.Example.Com", true},
		{"http://app.example.com", false},
		{"https://app.example.com:8443", false},
		{"https://app.example.com.evil.net", false},
		{"https://evil.example", false},
		{"null", false},
		{"http://localhost:3000", true},
		{"http://localhost", false},
		{"http://localhost:3001", false},
		{"https://a.example.com", true},
		{"https://a.b.example.com", true},
		{"https://A.Example.Com", true},
		{"https://example.com", false}, // the domain itself is not its subdomain
		{"https://.example.com", false},
		{"https://evilexample.com", false},
		{"https://a.example.com.evil.net", false},
		{"http://a.example.com", false},
		{"https://a.example.com:8443", false},
		// Strings browsers do not send, built to end in an allowed suffix.
		{"https://evil.com/.example.com", false},
		{"https://evil.com?.example.com", false},
		{"https://evil.com#.example.com", false},
		{"https://evil.com\\.example.com", false},
		{"https://evil.com\\a.example.com", false},
		{"https://a.example.com@evil.com", false},
		{"https://evil.com@a.example.com", false},
		{"https://a.example.com/", false},
		{"https://a.example.com:", false},
		{"https://a.example.com:x", false},
		{"https://a..example.com", false},
		{"https://a.example.com.", false},
		{"https://a%2eexample.com", false},
		{"https://app.example.com/.", false},
		{"http://localhost:3000/x", false},
	} {
		assert.Equal(t, tc.want, o.Allowed(tc.origin), "Allowed(%q)", tc.origin)
	}

	var all *auth.Origins
	assert.True(t, all.Allowed("https://anything.example"), "a nil list allows all")
	assert.Equal(t, "*", all.String())
}
