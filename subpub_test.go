package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// subLines runs "fanout sub args..." and returns its stdout lines as they
// come, decoded, and the command.
func startSub(t *testing.T, args ...string) (<-chan subLine, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(fanoutBinary(t), append([]string{"sub"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = &syncBuffer{}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan subLine, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l subLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				l = subLine{Event: "unparsable", Error: sc.Text()}
			}
			lines <- l
		}
	}()
	return lines, cmd
}

// next returns the next line of sub that ok accepts, and the lines before.
func next(t *testing.T, lines <-chan subLine, what string, ok func(subLine) bool) (subLine, []subLine) {
	t.Helper()
	var skipped []subLine
	deadline := time.After(waitTimeout)
	for {
		select {
		case l, open := <-lines:
			require.True(t, open, "fanout sub ended waiting for %s; before: %+v", what, skipped)
			if ok(l) {
				return l, skipped
			}
			skipped = append(skipped, l)
		case <-deadline:
			t.Fatalf("waiting for %s; got %+v", what, skipped)
		}
	}
}

// runPub runs "fanout pub args..." with stdin and returns its exit code,
// stdout and stderr.
func runPub(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fanoutBinary(t), append([]string{"pub"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, stdout.String(), stderr.String()
}

// TestSubPubAcrossRestart: "fanout pub" publishes an argument and lines of
// its input; "fanout sub" prints each message once, in order, stays up
// while the server restarts, reconnects, and prints the loss that the
// restart's lost history causes, then the messages after it.
func TestSubPubAcrossRestart(t *testing.T) {
	s := startServe(t)
	lines, sub := startSub(t, "--url", "ws://"+s.addr, "news")
	next(t, lines, "subscribed", func(l subLine) bool { return l.Event == "subscribed" && l.Topic == "news" })

	code, out, stderr := runPub(t, "", "--url", "http://"+s.addr, "news", `{"n":1}`)
	require.Equal(t, 0, code, stderr)
	assert.JSONEq(t, `{"topic":"news","seq":1}`, out)
	code, out, stderr = runPub(t, "{\"n\":2}\n\n{\"n\":3}\nnot json\n{\"n\":4}\n", "--url", "http://"+s.addr, "news", "-")
	assert.Equal(t, 1, code, "a line refused: exit 1")
	assert.Contains(t, stderr, "line 4: ")
	assert.Equal(t, 3, strings.Count(out, "\n"), out)

	for want := uint64(1); want <= 4; want++ {
		l, skipped := next(t, lines, "a message", func(l subLine) bool { return l.Event == "" })
		assert.Empty(t, skipped)
		require.NotNil(t, l.Seq)
		assert.Equal(t, want, *l.Seq)
		assert.JSONEq(t, `{"n":`+string(rune('0'+want))+`}`, string(l.Data))
	}

	// The restart: SIGTERM, then a new server on the same address, with
	// no history of the old one.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, s.wait(t))
	s = startServeAt(t, s.addr)
	for i := 5; i <= 6; i++ {
		code, _, stderr := runPub(t, "", "--url", "http://"+s.addr, "news", `{"n":`+string(rune('0'+i))+`}`)
		require.Equal(t, 0, code, stderr)
	}
	// Every seq of the new epoch is printed once after the loss line, or
	// inside its range.
	lost, skipped := next(t, lines, "the loss", func(l subLine) bool { return l.Event == "lost" })
	for _, l := range skipped {
		assert.NotEqual(t, "", l.Event, "no message before the loss line: %+v", l)
	}
	assert.Equal(t, "new_epoch", lost.Reason)
	require.NotNil(t, lost.PrevSeq)
	assert.Equal(t, uint64(4), *lost.PrevSeq)
	require.NotNil(t, lost.To)
	for want := *lost.To + 1; want <= 2; want++ {
		l, _ := next(t, lines, "a message after the restart", func(l subLine) bool { return l.Event == "" })
		assert.Equal(t, want, *l.Seq)
	}
	code, _, stderr = runPub(t, "", "--url", "http://"+s.addr, "news", `{"n":7}`)
	require.Equal(t, 0, code, stderr)
	l, _ := next(t, lines, "the last message", func(l subLine) bool { return l.Event == "" })
	assert.Equal(t, uint64(3), *l.Seq)

	require.NoError(t, sub.Process.Signal(syscall.SIGINT))
	require.NoError(t, sub.Wait(), "fanout sub exits 0 on SIGINT")
}

// TestSubPubUsage: missing arguments are usage errors (exit 2).
func TestSubPubUsage(t *testing.T) {
	code, _, _ := runFanout(t, "sub")
	assert.Equal(t, 2, code)
	code, _, _ = runFanout(t, "pub")
	assert.Equal(t, 2, code)
	code, _, stderr := runFanout(t, "sub", "--url", "ws://127.0.0.1:1", "bad topic")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "not a topic name")
}

// TestSubBadToken: "fanout sub --token" with a token the server refuses
// exits 1 with the 401, rather than waiting forever for a token that a
// fixed --token cannot give.
func TestSubBadToken(t *testing.T) {
	s := startServe(t, "--jwt-secret", strings.Repeat("s", 32))
	start := time.Now()
	code, _, stderr := runFanout(t, "sub", "--url", "ws://"+s.addr, "--token", "garbage", "news")
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, "401")
	assert.Less(t, time.Since(start), waitTimeout/2, "it ends at once")
}

// TestPubBatchesLines: lines that are already there when fanout pub reads
// go in batches (far fewer requests than lines), in order, each line's seq
// printed in turn, and a bad line is reported by its number alone.
func TestPubBatchesLines(t *testing.T) {
	s := startServe(t)
	var in strings.Builder
	const n = 2000
	for i := 1; i <= n; i++ {
		if i == 777 {
			in.WriteString("{oops\n")
			continue
		}
		fmt.Fprintf(&in, "{\"i\":%d}\n", i)
	}
	code, out, stderr := runPub(t, in.String(), "--url", "http://"+s.addr, "lines", "-")
	assert.Equal(t, 1, code, stderr)
	assert.Equal(t, "fanout pub: line 777: not valid JSON\n", stderr)
	seqs := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, seqs, n-1)
	for i, l := range seqs {
		assert.JSONEq(t, fmt.Sprintf(`{"topic":"lines","seq":%d}`, i+1), l)
	}
	resp, err := httpClient.Get("http://" + s.addr + "/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	assert.Less(t, st.Server.HTTPRequests, uint64(n/10), "batches, not a request a line")
}

// TestPubBatchBytes: a batch of "fanout pub" stays within its 32 KiB, the
// items' JSON included, however long its lines: one that would take it past
// waits for the next batch. The size was checked before a line was added,
// and two lines of 20 KB went in one body of 40 KB.
func TestPubBatchBytes(t *testing.T) {
	var mu sync.Mutex
	var bodies []int
	seq := 0
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, len(body))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		if r.URL.Query().Get("topic") != "" {
			seq++
			fmt.Fprintf(w, `{"seq":%d}`, seq)
			return
		}
		var items []json.RawMessage
		_ = json.Unmarshal(body, &items)
		var res []string
		for range items {
			seq++
			res = append(res, fmt.Sprintf(`{"topic":"big","seq":%d}`, seq))
		}
		fmt.Fprintf(w, "[%s]", strings.Join(res, ","))
	}))
	defer hs.Close()
	var in strings.Builder
	for range 5 {
		fmt.Fprintf(&in, "%q\n", strings.Repeat("z", 20000))
	}
	for range 10 {
		fmt.Fprintf(&in, "%q\n", strings.Repeat("y", 3000))
	}
	code, out, stderr := runPub(t, in.String(), "--url", hs.URL, "big", "-")
	require.Equal(t, 0, code, stderr)
	assert.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 15)
	mu.Lock()
	defer mu.Unlock()
	for i, n := range bodies {
		assert.LessOrEqual(t, n, 32<<10, "body %d of %v", i, bodies)
	}
}
