package wsconn

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewCloseFrameLongReason: a close reason over 123 bytes is cut on a
// UTF-8 boundary, so the close frame's payload stays within the 125 bytes
// of a control frame (a 300-byte reason made a 302-byte payload).
func TestNewCloseFrameLongReason(t *testing.T) {
	for _, tc := range []struct {
		reason string
		want   string
	}{
		{"short", "short"},
		{strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{strings.Repeat("a", 300), strings.Repeat("a", 123)},
		{strings.Repeat("é", 100), strings.Repeat("é", 61)},            // 2-byte characters: 122 bytes
		{"a" + strings.Repeat("€", 60), "a" + strings.Repeat("€", 40)}, // 3-byte characters: 121 bytes
		{strings.Repeat("😀", 40), strings.Repeat("😀", 30)},             // 4-byte characters: 120 bytes
	} {
		f := NewCloseFrame(ws.StatusPolicyViolation, tc.reason)
		h, err := ws.ReadHeader(strings.NewReader(string(f)))
		require.NoError(t, err)
		payload := f[len(f)-int(h.Length):]
		assert.LessOrEqual(t, len(payload), 125)
		assert.Equal(t, ws.OpClose, h.OpCode)
		assert.Equal(t, tc.want, string(payload[2:]), "reason of %d bytes", len(tc.reason))
		assert.True(t, utf8.Valid(payload[2:]))
	}
}
