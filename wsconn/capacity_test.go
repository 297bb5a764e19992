package wsconn_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// The capacity tests hold thousands of connections, client and server side
// in this one process, on raw client sockets that no goroutine reads.

// requireFDs makes sure the process may open need file descriptors: it
// raises the soft limit up to the hard limit if needed, and skips the test
// when even the hard limit is too low.
func requireFDs(t testing.TB, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	// uint64 conversions: the fields are int64 on FreeBSD.
	if uint64(lim.Cur) >= need {
		return
	}
	if uint64(lim.Max) < need {
		t.Skipf("needs %d open files; the hard limit is %d (raise it with ulimit -Hn)", need, lim.Max)
	}
	old := lim
	lim.Cur = lim.Max
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// dialMany opens n upgraded raw clients to addr's /echo, a few at a time.
// The dialing goroutines are gone when it returns; the clients are closed
// when the test ends.
func dialMany(t testing.TB, addr string, n int) []*rawClient {
	t.Helper()
	clients := make([]*rawClient, n)
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				_ = c.conn.Close()
			}
		}
	})
	const dialers = 8
	var wg sync.WaitGroup
	errs := make([]error, dialers)
	for d := range dialers {
		wg.Go(func() {
			for i := d; i < n; i += dialers {
				clients[i], errs[d] = tryDialWS(addr)
				if errs[d] != nil {
					errs[d] = fmt.Errorf("client %d: %w", i, errs[d])
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return clients
}

// TestHalfFramesHoldNoWorker parks 1000 connections in the middle of a
// frame. None of them may hold a worker: a new client still gets its echo,
// and when the 1000 finish their frames, every one is echoed.
func TestHalfFramesHoldNoWorker(t *testing.T) {
	const n = 1000
	requireFDs(t, 2*n+1000)
	_, addr := startServer(t, wsconn.Config{})

	clients := dialMany(t, addr, n)
	rest := make([][]byte, n)
	payloads := make([][]byte, n)
	for i, c := range clients {
		payloads[i] = []byte(fmt.Sprintf("message %04d %s", i, strings.Repeat("x", 100)))
		f := frame(true, opBinary, payloads[i])
		// The header (2 + 4 bytes) and part of the payload.
		cut := 6 + 20
		require.NoError(t, c.writeFrames(frames(f[:cut]), false))
		rest[i] = f[cut:]
	}

	// Every worker would be busy if a half frame held one.
	late := dialWS(t, addr)
	require.NoError(t, late.writeFrames(frames(frame(true, opText, []byte("still served"))), false))
	require.NoError(t, late.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
	f, err := late.readFrame()
	require.NoError(t, err)
	require.Equal(t, echoText("still served"), f)

	for i, c := range clients {
		require.NoError(t, c.writeFrames(frames(rest[i]), false), "client %d", i)
	}
	for i, c := range clients {
		require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
		f, err := c.readFrame()
		require.NoError(t, err, "client %d", i)
		require.Equal(t, echoBinary(payloads[i]), f, "client %d", i)
	}
}

// socketLinks returns the /proc/self/fd links ("socket:[inode]") of the
// process's open sockets, by fd.
func socketLinks() (map[string]string, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for _, e := range entries {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		if strings.HasPrefix(link, "socket:") {
			out[e.Name()] = link
		}
	}
	return out, nil
}

// fdLink returns what /proc/self/fd says c's socket is.
func fdLink(t testing.TB, c *rawClient) string {
	t.Helper()
	rc, err := c.conn.SyscallConn()
	require.NoError(t, err)
	var link string
	var lerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		link, lerr = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	}))
	require.NoError(t, lerr)
	return link
}

// TestConnectionCostsOneFD checks that the server holds exactly one fd per
// connection (no dup, as easygo's Handle would make): of the sockets that
// appear while N clients connect, N are the clients' and N the server's.
func TestConnectionCostsOneFD(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts fds in /proc/self/fd: Linux only")
	}
	const n = 500
	requireFDs(t, 2*n+1000)
	srv, addr := startServer(t, wsconn.Config{})

	before, err := socketLinks()
	require.NoError(t, err)
	clients := dialMany(t, addr, n)
	clientLinks := make(map[string]bool, n)
	for _, c := range clients {
		clientLinks[fdLink(t, c)] = true
	}
	require.Len(t, clientLinks, n)
	require.Equal(t, n, srv.Connections())

	beforeLinks := make(map[string]bool, len(before))
	for _, l := range before {
		beforeLinks[l] = true
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		after, err := socketLinks()
		if !assert.NoError(c, err) {
			return
		}
		serverSide := 0
		for _, l := range after {
			if !beforeLinks[l] && !clientLinks[l] {
				serverSide++
			}
		}
		assert.Equal(c, n, serverSide, "new server-side sockets")
		assert.Equal(c, 2*n, len(after)-len(before), "new sockets")
	}, rawTimeout, 50*time.Millisecond)
}

// goroutines returns runtime.NumGoroutine and, from a dump of all stacks,
// how many goroutines run the server's code (wsconn, poller, easygo), so a
// failure can tell the server's goroutines from anyone else's.
func goroutines() (total, server int) {
	total = runtime.NumGoroutine()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/fanout/fanout/wsconn.") ||
			strings.Contains(g, "github.com/fanout/fanout/poller.") ||
			strings.Contains(g, "github.com/mailru/easygo/") {
			server++
		}
	}
	return total, server
}

// settledGoroutines waits until the goroutine counts read the same twice in
// a row, a little apart, and returns them.
func settledGoroutines() (total, server int) {
	total, server = goroutines()
	for range 50 {
		time.Sleep(50 * time.Millisecond)
		t, s := goroutines()
		if t == total && s == server {
			break
		}
		total, server = t, s
	}
	return total, server
}

// TestGoroutinesIndependentOfConnections checks that the server has no
// goroutine per connection: with 5000 idle connections it runs as many
// goroutines as with 100. The clients are raw sockets nobody reads from and
// the dialing goroutines are gone, so the whole process must run as many
// goroutines too.
func TestGoroutinesIndependentOfConnections(t *testing.T) {
	const few, many = 100, 5000
	requireFDs(t, 2*many+1000)
	srv, addr := startServer(t, wsconn.Config{})

	dialMany(t, addr, few)
	require.Equal(t, few, srv.Connections())
	baseTotal, baseServer := settledGoroutines()
	require.NotZero(t, baseServer, "no server goroutine found in the stack dump")
	t.Logf("with %d connections: %d goroutines, %d of them the server's", few, baseTotal, baseServer)

	dialMany(t, addr, many-few)
	require.Equal(t, many, srv.Connections())
	// Retry while goroutines of the dialing wind down. Not require.Eventually:
	// it runs its condition on a goroutine of its own, which would count.
	total, server := goroutines()
	for deadline := time.Now().Add(rawTimeout); (total != baseTotal || server != baseServer) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		total, server = goroutines()
	}
	require.Equal(t, baseServer, server, "server goroutines with %d connections vs with %d", many, few)
	require.Equal(t, baseTotal, total, "goroutines (runtime.NumGoroutine) with %d connections vs with %d", many, few)
}
