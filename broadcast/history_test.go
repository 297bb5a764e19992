package broadcast

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHistoryModel drives a history ring with random pushes, expiries and
// since queries and compares it with a plain slice of the last entries.
func TestHistoryModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, limit := range []int{1, 2, 3, 10, 16, 17, 33, 100} {
		var h history
		var model []entry
		var last uint64
		for step := range 3000 {
			switch op := rng.IntN(20); {
			case op < 14:
				last++
				e := entry{seq: last, at: int64(last), frame: []byte(strconv.FormatUint(last, 10))}
				h.push(e, limit)
				model = append(model, e)
				if len(model) > limit {
					model = model[1:]
				}
			case op < 15:
				cutoff := int64(last) - int64(rng.IntN(limit+3))
				h.expire(cutoff)
				for len(model) > 0 && model[0].at < cutoff {
					model = model[1:]
				}
			default:
				since := uint64(rng.Int64N(int64(last) + 3))
				frames, ok := h.since(since, last)
				var want [][]byte
				wantOK := false
				switch {
				case since >= last:
					wantOK = since == last
				case len(model) > 0 && model[0].seq <= since+1:
					wantOK = true
					for _, e := range model {
						if e.seq > since {
							want = append(want, e.frame)
						}
					}
				}
				require.Equal(t, wantOK, ok, "limit %d step %d: since(%d, %d), history %d..", limit, step, since, last, len(model))
				require.Equal(t, len(want), len(frames), "limit %d step %d: since(%d, %d)", limit, step, since, last)
				for i := range want {
					require.Equal(t, string(want[i]), string(frames[i]), "limit %d step %d: since(%d)", limit, step, since)
				}
				if ok {
					require.Equal(t, int(last-min(since, last)), len(frames), "a recovered replay is complete")
				}
			}
			require.Equal(t, len(model), h.n, "limit %d step %d: entries held", limit, step)
			require.LessOrEqual(t, len(h.ring), limit, "limit %d: the ring never grows past the limit", limit)
		}
	}
}

// TestHistoryNone: a negative HistorySize keeps nothing, so only a since
// equal to the current seq is recovered.
func TestHistoryNone(t *testing.T) {
	var h history
	for i := uint64(1); i <= 5; i++ {
		h.push(entry{seq: i, frame: []byte{byte(i)}}, -1)
	}
	assert.Zero(t, h.n)
	_, ok := h.since(4, 5)
	assert.False(t, ok)
	frames, ok := h.since(5, 5)
	assert.True(t, ok)
	assert.Empty(t, frames)
}

// TestCompile checks the compiled frame of a message: one unmasked final
// text frame whose payload length matches, holding exactly
// {"topic","seq","data"}.
func TestCompile(t *testing.T) {
	seqs := []uint64{0, 1, 9, 10, 99, 100, 12345, 1 << 32, math.MaxUint64}
	datas := []string{`1`, `"x"`, `null`, `{"a":[1,2,{"b":"ü"}]}`, `""`,
		`"` + strings.Repeat("y", 200) + `"`, `"` + strings.Repeat("z", 70000) + `"`}
	for _, seq := range seqs {
		for _, data := range datas {
			f := compile("a-topic/x:1", seq, []byte(data))
			hdr, err := ws.ReadHeader(bytes.NewReader(f))
			require.NoError(t, err)
			assert.True(t, hdr.Fin)
			assert.Equal(t, ws.OpText, hdr.OpCode)
			assert.False(t, hdr.Masked)
			payload := f[len(f)-int(hdr.Length):]
			require.Equal(t, int(hdr.Length), len(f)-headerLen(hdr.Length), "seq %d, %d bytes of data", seq, len(data))
			require.True(t, utf8.Valid(payload))
			var m map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(payload, &m), "%s", payload)
			require.Len(t, m, 3)
			assert.Equal(t, `"a-topic/x:1"`, string(m["topic"]))
			assert.Equal(t, strconv.FormatUint(seq, 10), string(m["seq"]))
			assert.Equal(t, data, string(m["data"]))
			assert.Equal(t, envelopeLen("a-topic/x:1", seq, []byte(data)), int(hdr.Length))
		}
	}
}

func headerLen(n int64) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}
