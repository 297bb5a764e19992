package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeCluster: three "fanout serve --nats" processes on one NATS with
// JetStream. Publishes through all three at once reach subscribers of both
// libraries on all three with the same gapless seqs; a node killed with
// SIGKILL loses nothing it acknowledged, and its client moves to another
// node with since=TOPIC:N@EPOCH and gets exactly what it missed.
func TestServeCluster(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(waitTimeout))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })

	var nodes []*server
	for range 3 {
		nodes = append(nodes, startServe(t, "--nats", ns.ClientURL()))
	}
	const topic, each = "news", 20
	type sub struct {
		*subscriber
		epoch string
	}
	var subs []sub
	for i, n := range nodes {
		kind := []string{"gorilla", "coder"}[i%2]
		s := dialSubscriber(t, kind, "ws://"+n.addr+"/ws?topics="+topic)
		p, err := s.read()
		require.NoError(t, err)
		var reply struct {
			Type, Epoch string
			Seq         uint64
		}
		require.NoError(t, json.Unmarshal(p, &reply))
		require.Equal(t, "subscribed", reply.Type, "%s", p)
		subs = append(subs, sub{s, reply.Epoch})
	}
	for _, s := range subs {
		assert.Equal(t, subs[0].epoch, s.epoch, "every node hands out the topic's one epoch")
	}

	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for k := range each {
				data := fmt.Sprintf(`{"node":%d,"k":%d}`, i, k)
				seq, err := n.post(topic, data)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				acked[seq] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, acked, 3*each)
	for _, s := range subs {
		for seq := uint64(1); seq <= 3*each; seq++ {
			p, err := s.read()
			require.NoError(t, err)
			var m message
			require.NoError(t, json.Unmarshal(p, &m))
			require.Equal(t, seq, m.Seq, "%s subscriber: %s", s.kind, p)
			require.JSONEq(t, acked[seq], string(m.Data))
		}
	}

	// Node 0 dies; its client comes back on node 1 from seq 30, and a
	// publish acknowledged just before the kill is not lost.
	seq, err := nodes[0].post(topic, `"last words"`)
	require.NoError(t, err)
	require.NoError(t, nodes[0].cmd.Process.Signal(syscall.SIGKILL))
	nodes[0].wait(t)
	moved := dialSubscriber(t, "gorilla", fmt.Sprintf("ws://%s/ws?topics=%s&since=%s:30@%s", nodes[1].addr, topic, topic, subs[0].epoch))
	p, err := moved.read()
	require.NoError(t, err)
	var reply struct {
		Type      string
		Seq       uint64
		Recovered bool
	}
	require.NoError(t, json.Unmarshal(p, &reply))
	require.True(t, reply.Recovered, "%s", p)
	require.Equal(t, uint64(30), reply.Seq)
	for want := uint64(31); want <= seq; want++ {
		p, err := moved.read()
		require.NoError(t, err)
		var m message
		require.NoError(t, json.Unmarshal(p, &m))
		require.Equal(t, want, m.Seq, "%s", p)
	}

	resp, err := httpClient.Get("http://" + nodes[1].addr + "/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st struct {
		Hub struct {
			NATSConnected *bool `json:"nats_connected"`
		} `json:"hub"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	require.NotNil(t, st.Hub.NATSConnected)
	assert.True(t, *st.Hub.NATSConnected)
}

// TestServeNATSUnreachable: a node whose NATS cannot be reached at start
// says so and exits 1, rather than serve a cluster it is not part of.
func TestServeNATSUnreachable(t *testing.T) {
	code, _, stderr := runFanout(t, "serve", "--no-auth", "--listen", freeAddr(t), "--nats", "nats://"+freeAddr(t))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "connect to NATS")
}
