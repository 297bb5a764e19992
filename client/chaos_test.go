package client_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/wsconn"
)

// TestChaos mixes what goes wrong between a client and a server while
// messages flow on three topics: connections reset, closed with a FIN and
// no close frame, cut in the middle of a frame, and closed for an expired
// token (tokens live 2 s). At the end, for every topic, the application
// saw each seq exactly once, in order, or was told of it in a Lost event;
// and as the server's history holds them all, none was lost.
func TestChaos(t *testing.T) {
	secret := []byte(strings.Repeat("c", 32))
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	require.NoError(t, err)
	s := startServer(t, broadcast.Config{Auth: v, HistorySize: 10_000}, wsconn.Config{})
	p := startProxy(t, s.addr)
	mint := func(ttl time.Duration) (string, error) {
		return auth.SignHS256(secret, auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "chaos", ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
			Subscribe:        jwt.ClaimStrings{"*"},
			Publish:          jwt.ClaimStrings{"*"},
		})
	}
	topics := []string{"t0", "t1", "t2"}

	var mu sync.Mutex
	seen := map[string][]uint64{}
	lost := map[string][][2]uint64{}
	closes := map[int]int{} // by close code
	c := dial(t, p.url(), &client.Options{
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Token: func(context.Context) (string, error) { return mint(2 * time.Second) },
		OnEvent: func(e client.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch e.Kind {
			case client.Lost:
				lost[e.Topic] = append(lost[e.Topic], [2]uint64{e.From, e.To})
			case client.Disconnected:
				closes[e.Code]++
			}
		},
	})
	for _, topic := range topics {
		require.NoError(t, c.Subscribe(topic, func(m client.Message) {
			mu.Lock()
			seen[m.Topic] = append(seen[m.Topic], m.Seq)
			mu.Unlock()
		}))
	}

	// The publisher goes straight to the server; the chaos is between the
	// server and the subscriber.
	pubTok, err := mint(time.Hour)
	require.NoError(t, err)
	pub, err := client.NewPublisher("http://"+s.addr, &client.Options{Token: func(context.Context) (string, error) { return pubTok, nil }})
	require.NoError(t, err)
	// The chaos, in rounds: a reset, a FIN, half a frame, or a quiet spell
	// in which the token expires (4001).
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range 16 {
			switch round % 4 {
			case 0:
				p.reset()
			case 1:
				p.fin()
			case 2:
				p.half.Store(true)
			case 3:
				time.Sleep(2500 * time.Millisecond) // past the token's exp
			}
			time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	perTopic := uint64(0)
	for publishing := true; publishing; {
		select {
		case <-done:
			publishing = false
		case <-time.After(10 * time.Millisecond):
		}
		for _, topic := range topics {
			_, err := pub.Publish(ctx, topic, fmt.Appendf(nil, `{"i":%d}`, perTopic))
			require.NoError(t, err)
		}
		perTopic++
	}

	// Every seq is accounted for: delivered, or inside a Lost range.
	deadline := time.Now().Add(waitTimeout)
	accounted := func(topic string) bool {
		last := uint64(0)
		if n := len(seen[topic]); n > 0 {
			last = seen[topic][n-1]
		}
		for _, r := range lost[topic] {
			last = max(last, r[1])
		}
		return last == perTopic
	}
	for {
		mu.Lock()
		ok := accounted("t0") && accounted("t1") && accounted("t2")
		mu.Unlock()
		if ok {
			break
		}
		require.True(t, time.Now().Before(deadline), "not every seq accounted for")
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, topic := range topics {
		told := make(map[uint64]int)
		prev := uint64(0)
		for _, q := range seen[topic] {
			assert.Greater(t, q, prev, "%s: in order, once", topic)
			prev = q
			told[q]++
		}
		for _, r := range lost[topic] {
			for q := r[0]; q <= r[1]; q++ {
				told[q]++
			}
		}
		for q := uint64(1); q <= perTopic; q++ {
			assert.Equal(t, 1, told[q], "%s: seq %d delivered or reported exactly once", topic, q)
		}
	}
	t.Logf("%d messages a topic; closes by code %v; lost ranges %v", perTopic, closes, lost)
	// History (10,000 a topic) holds every message published: each
	// reconnect recovers what it missed, and nothing is lost.
	assert.Empty(t, lost, "nothing lost while history holds it")
	assert.Positive(t, closes[4001], "a token expired")
	assert.GreaterOrEqual(t, closes[0]+closes[1006], 6, "connections failed without a close frame")
}
