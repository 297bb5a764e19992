package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocsLinks: README links docs/DESIGN.md, and every relative link of
// the two names a file of the repository, never one outside the clone.
func TestDocsLinks(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	assert.Contains(t, string(readme), "](docs/DESIGN.md)", "README links the design document")
	assert.NotContains(t, string(readme), "../shared/", "README names a file outside the repository")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, doc := range []string{"README.md", "docs/DESIGN.md"} {
		b, err := os.ReadFile(doc)
		require.NoError(t, err)
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			path := filepath.Join(filepath.Dir(doc), target)
			assert.False(t, strings.HasPrefix(filepath.Clean(path), ".."), "%s links %s, outside the repository", doc, m[1])
			_, err := os.Stat(path)
			assert.NoError(t, err, "%s links %s", doc, m[1])
		}
	}
}

// TestNginxSnippetKeepsTokensOutOfLogs: README's nginx example logs with a
// format that has no query string, so a browser's ?token= never reaches the
// access log, and every access_log of it uses that format.
func TestNginxSnippetKeepsTokensOutOfLogs(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	// The example with a server block; the Cluster section's upstream
	// is a fragment of it.
	var conf string
	for _, m := range regexp.MustCompile("(?s)```nginx\n(.*?)```").FindAllSubmatch(b, -1) {
		if strings.Contains(string(m[1]), "server {") {
			conf = string(m[1])
		}
	}
	require.NotEmpty(t, conf, "README has an nginx example with a server block")

	format := regexp.MustCompile(`(?s)log_format\s+(\S+)\s+(.*?);`).FindStringSubmatch(conf)
	require.NotNil(t, format, "the example defines its log_format")
	// $request is the whole request line, query included; $request_uri,
	// $args and $query_string are the query or contain it.
	leaky := regexp.MustCompile(`\$(request|request_uri|args|query_string|arg_[a-z_]+)\b`)
	for _, v := range leaky.FindAllStringSubmatch(format[2], -1) {
		assert.Fail(t, "the log format writes the query string", "$%s in %q", v[1], format[2])
	}
	assert.Contains(t, format[2], "$uri")

	logs := regexp.MustCompile(`access_log\s+([^;]*);`).FindAllStringSubmatch(conf, -1)
	require.NotEmpty(t, logs, "the example sets its access_log")
	for _, l := range logs {
		fields := strings.Fields(l[1])
		ok := fields[0] == "off" || (len(fields) >= 2 && fields[1] == format[1])
		assert.True(t, ok, "access_log %s does not use the %s format", l[1], format[1])
	}
}
