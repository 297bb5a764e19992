package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	gorilla "github.com/gorilla/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
)

// waitTimeout bounds every wait: a deadline for a hang, never a latency
// assertion.
const waitTimeout = 20 * time.Second

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// raceEnabled reports whether this test binary was built with -race; the
// fanout binary is then built with it too.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// fanoutBinary builds the fanout command once per test run and returns its
// path.
func fanoutBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("no go tool in PATH: %w", err)
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "fanout-main-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "fanout")
		args := []string{"build", "-o", binPath}
		if raceEnabled() {
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool, append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runFanout runs the binary with args to completion and returns its exit
// code, stdout and stderr.
func runFanout(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, fanoutBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "fanout %v: %v; stderr:\n%s", args, err, stderr.String())
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// server is a running "fanout serve" process.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // of Wait, once done
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// startServe runs "fanout serve --listen ADDR args..." and waits until it
// answers /healthz. The process is killed when the test ends if it is still
// running.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	return startServeAt(t, freeAddr(t), args...)
}

// startServeAt is startServe on addr: the address of a server that has
// exited, for a restart.
func startServeAt(t *testing.T, addr string, args ...string) *server {
	t.Helper()
	bin := fanoutBinary(t)
	s := &server{addr: addr, stderr: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"serve", "--listen", s.addr}, withAuth(args)...)...)
	s.cmd.Stdout = io.Discard
	s.cmd.Stderr = s.stderr
	require.NoError(t, s.cmd.Start())
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("fanout serve stderr:\n%s", s.stderr.String())
		}
	})
	deadline := time.Now().Add(waitTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + s.addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("fanout serve exited before it was ready: %v\n%s", s.err, s.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "fanout serve not ready: %v\n%s", err, s.stderr.String())
	}
}

// withAuth adds --no-auth to args unless they configure authentication.
func withAuth(args []string) []string {
	for _, a := range args {
		if strings.HasPrefix(strings.TrimLeft(a, "-"), "jwt-") || strings.TrimLeft(a, "-") == "no-auth" {
			return args
		}
	}
	return append([]string{"--no-auth"}, args...)
}

// wait waits for the process to exit and returns its exit code.
func (s *server) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(waitTimeout):
		t.Fatalf("fanout serve did not exit\n%s", s.stderr.String())
	}
	if s.err == nil {
		return 0
	}
	var ee *exec.ExitError
	require.ErrorAs(t, s.err, &ee)
	return ee.ExitCode()
}

var httpClient = &http.Client{Timeout: waitTimeout}

// post publishes body to topic and returns the seq of the 202.
func (s *server) post(topic, body string) (uint64, error) {
	resp, err := httpClient.Post("http://"+s.addr+"/publish?topic="+topic, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("POST /publish: %d %s", resp.StatusCode, b)
	}
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("POST /publish: body %q: %w", b, err)
	}
	return r.Seq, nil
}

// subscriber is a WebSocket client of either library that reads text
// messages.
type subscriber struct {
	kind string
	read func() ([]byte, error)
	stop func()
}

func dialSubscriber(t *testing.T, kind, url string) *subscriber {
	t.Helper()
	switch kind {
	case "gorilla":
		c, _, err := (&gorilla.Dialer{HandshakeTimeout: waitTimeout}).Dial(url, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return &subscriber{kind: kind, stop: func() { _ = c.Close() }, read: func() ([]byte, error) {
			if err := c.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
				return nil, err
			}
			typ, p, err := c.ReadMessage()
			if err == nil && typ != gorilla.TextMessage {
				err = fmt.Errorf("message type %d, want text", typ)
			}
			return p, err
		}}
	case "coder":
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.CloseNow() })
		return &subscriber{kind: kind, stop: func() { _ = c.CloseNow() }, read: func() ([]byte, error) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			typ, p, err := c.Read(ctx)
			if err == nil && typ != websocket.MessageText {
				err = fmt.Errorf("message type %v, want text", typ)
			}
			return p, err
		}}
	}
	panic(kind)
}

// closeCode returns the close code in a read error of either library, or -1.
func closeCode(err error) int {
	var ce *gorilla.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return int(websocket.CloseStatus(err))
}

type message struct {
	Type  string          `json:"type"`
	Topic string          `json:"topic"`
	Seq   uint64          `json:"seq"`
	Data  json.RawMessage `json:"data"`
}

// TestServeShutdown: subscribers of both libraries are connected, N
// messages are POSTed and SIGTERM follows the last 202 at once. Every
// subscriber gets all N messages in order and then close 1001, and the
// process exits 0.
func TestServeShutdown(t *testing.T) {
	s := startServe(t)
	const topic, n = "news", 300
	var subs []*subscriber
	for i := range 6 {
		kind := []string{"gorilla", "coder"}[i%2]
		sub := dialSubscriber(t, kind, "ws://"+s.addr+"/ws?topics="+topic)
		p, err := sub.read()
		require.NoError(t, err)
		var m message
		require.NoError(t, json.Unmarshal(p, &m))
		require.Equal(t, "subscribed", m.Type, "%s", p)
		require.Zero(t, m.Seq)
		subs = append(subs, sub)
	}

	errs := make(chan error, len(subs))
	for _, sub := range subs {
		go func() {
			errs <- func() error {
				defer sub.stop()
				for i := uint64(1); i <= n; i++ {
					p, err := sub.read()
					if err != nil {
						return fmt.Errorf("%s: message %d of %d: %w (close code %d)", sub.kind, i, n, err, closeCode(err))
					}
					var m message
					if err := json.Unmarshal(p, &m); err != nil {
						return fmt.Errorf("%s: %q: %w", sub.kind, p, err)
					}
					if m.Type != "" || m.Topic != topic || m.Seq != i || string(m.Data) != `{"i":`+strconv.FormatUint(i, 10)+`}` {
						return fmt.Errorf("%s: want message %d, got %s", sub.kind, i, p)
					}
				}
				p, err := sub.read()
				if err == nil {
					return fmt.Errorf("%s: after %d messages, want close 1001, got %q", sub.kind, n, p)
				}
				if code := closeCode(err); code != 1001 {
					return fmt.Errorf("%s: after %d messages, want close 1001, got %v (code %d)", sub.kind, n, err, code)
				}
				return nil
			}()
		}()
	}

	for i := uint64(1); i <= n; i++ {
		seq, err := s.post(topic, `{"i":`+strconv.FormatUint(i, 10)+`}`)
		require.NoError(t, err)
		require.Equal(t, i, seq)
	}
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))

	for range subs {
		select {
		case err := <-errs:
			assert.NoError(t, err)
		case <-time.After(2 * waitTimeout):
			t.Fatal("subscribers did not finish")
		}
	}
	assert.Equal(t, 0, s.wait(t), "exit status; stderr:\n%s", s.stderr.String())
	assert.Contains(t, s.stderr.String(), "shutting down")
}

// TestServeStatsAndSIGINT: /stats reports the hub's and the server's
// counters; SIGINT stops the server like SIGTERM.
func TestServeStatsAndSIGINT(t *testing.T) {
	s := startServe(t, "--slow-consumer", "drop", "--history-size", "5")
	sub := dialSubscriber(t, "coder", "ws://"+s.addr+"/ws?topics=st")
	_, err := sub.read()
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		_, err := s.post("st", strconv.Itoa(i))
		require.NoError(t, err)
	}
	for range 3 {
		_, err := sub.read()
		require.NoError(t, err)
	}
	resp, err := httpClient.Get("http://" + s.addr + "/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st struct {
		Server struct {
			Upgrades uint64 `json:"upgrades"`
		} `json:"server"`
		Hub struct {
			Topics        int    `json:"topics"`
			Subscriptions int64  `json:"subscriptions"`
			Clients       int64  `json:"clients"`
			MessagesIn    uint64 `json:"messages_in"`
			Deliveries    uint64 `json:"deliveries"`
		} `json:"hub"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	assert.Equal(t, uint64(1), st.Server.Upgrades)
	assert.Equal(t, 1, st.Hub.Topics)
	assert.Equal(t, int64(1), st.Hub.Subscriptions)
	assert.Equal(t, int64(1), st.Hub.Clients)
	assert.Equal(t, uint64(3), st.Hub.MessagesIn)
	assert.Equal(t, uint64(3), st.Hub.Deliveries)

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGINT))
	_, err = sub.read()
	assert.Equal(t, 1001, closeCode(err), "%v", err)
	assert.Equal(t, 0, s.wait(t))
}

// TestServeCommandLine covers --help, unknown flags and commands.
func TestServeCommandLine(t *testing.T) {
	code, _, stderr := runFanout(t, "serve", "--help")
	assert.Equal(t, 0, code)
	for _, flag := range []string{
		"-listen", "-workers", "-max-message-bytes", "-max-queue-bytes", "-max-header-bytes",
		"-max-handshakes", "-handshake-timeout", "-shutdown-timeout", "-echo", "-log-level",
		"-shards", "-history-size", "-history-age", "-max-subscriptions", "-max-topic-bytes",
		"-slow-consumer", "-ping-interval", "-idle-timeout", "-frame-timeout",
		"-max-topics", "-max-history-bytes", "-max-byte-rate",
		"-http-keepalive-requests", "-http-idle-timeout", "-compression", "-compression-min-bytes",
	} {
		assert.Regexp(t, `(?m)^  `+flag+`( |$)`, stderr, "serve --help lists %s", flag)
	}
	assert.Contains(t, stderr, "/publish")

	code, _, stderr = runFanout(t, "serve", "--no-such-flag")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "flag provided but not defined")

	code, _, _ = runFanout(t, "serve", "--no-auth", "--listen", "127.0.0.1:0", "extra-argument")
	assert.Equal(t, 2, code)

	code, _, stderr = runFanout(t, "serve", "--no-auth", "--listen", "127.0.0.1:0", "--slow-consumer", "ignore")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "slow-consumer")

	code, _, stderr = runFanout(t, "no-such-command")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "unknown command")

	code, stdout, _ := runFanout(t, "help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "fanout [serve] [flags]")
}

// TestServeEchoFlag: /echo is on by default and --echo=false turns it off.
func TestServeEchoFlag(t *testing.T) {
	on := startServe(t)
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+on.addr+"/echo", nil)
	require.NoError(t, err)
	require.NoError(t, c.WriteMessage(gorilla.TextMessage, []byte("hi")))
	_, got, err := c.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, "hi", string(got))
	require.NoError(t, c.Close())

	off := startServe(t, "--echo=false")
	_, resp, err := gorilla.DefaultDialer.Dial("ws://"+off.addr+"/echo", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// serveToken signs a token of user alice that may subscribe to and publish
// on every topic: HS256 with a []byte secret, ES256 with an ECDSA key.
func serveToken(t *testing.T, key any, issuer string) string {
	t.Helper()
	var method jwt.SigningMethod = jwt.SigningMethodHS256
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		method = jwt.SigningMethodES256
	}
	tok, err := jwt.NewWithClaims(method, jwt.MapClaims{
		"sub": "alice", "iss": issuer, "exp": time.Now().Add(time.Hour).Unix(),
		"subscribe": []string{"*"}, "publish": []string{"*"},
	}).SignedString(key)
	require.NoError(t, err)
	return tok
}

// upgrade sends a WebSocket upgrade request for /ws to s with the extra
// header fields and returns the response (its body unread). The
// connection is closed when the test ends.
func (s *server) upgrade(t *testing.T, header http.Header) *http.Response {
	t.Helper()
	return s.upgradePath(t, "/ws", header)
}

// upgradePath sends a WebSocket upgrade request for path with the extra
// header fields and returns the response.
func (s *server) upgradePath(t *testing.T, path string, header http.Header) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.addr, waitTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitTimeout)))
	var req bytes.Buffer
	req.WriteString("GET " + path + " HTTP/1.1\r\nHost: " + s.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	require.NoError(t, header.Write(&req))
	req.WriteString("\r\n")
	_, err = conn.Write(req.Bytes())
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	require.NoError(t, err)
	return resp
}

// writePublicKey writes the PEM of pub to a file in a temporary directory
// and returns its path.
func writePublicKey(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "jwt.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	return path
}

// TestServeAuthConfig: "fanout serve" refuses to start without a choice
// of authentication, with two, or with a key it cannot use; it exits 2
// and says why.
func TestServeAuthConfig(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a key"), 0o600))
	for _, tc := range []struct {
		name, envSecret string
		args            []string
		stderr          string
	}{
		{"no auth flag", "", nil, "--no-auth"},
		{"--no-auth and --jwt-secret", "", []string{"--no-auth", "--jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret"}, "exclude each other"},
		{"--no-auth and FANOUT_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret", []string{"--no-auth"}, "exclude each other"},
		{"a secret and a public key", "", []string{"--jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret", "--jwt-public-key", writePublicKey(t, &p256.PublicKey)}, "not both"},
		{"no such key file", "", []string{"--jwt-public-key", filepath.Join(t.TempDir(), "missing.pem")}, "--jwt-public-key"},
		{"not a key", "", []string{"--jwt-public-key", garbage}, "--jwt-public-key"},
		{"P-384 key", "", []string{"--jwt-public-key", writePublicKey(t, &p384.PublicKey)}, "P-256"},
		{"bad origin", "", []string{"--no-auth", "--allowed-origins", "app.example.com"}, "--allowed-origins"},
		{"short secret", "", []string{"--jwt-secret", "short"}, "--jwt-secret (or $FANOUT_JWT_SECRET) is 5 bytes: an HS256 secret must be at least 32"},
		{"short FANOUT_JWT_SECRET", "0123456789abcdef0123456789abcde", []string{"--jwt-issuer", "i"}, "is 31 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("FANOUT_JWT_SECRET", tc.envSecret)
			code, _, stderr := runFanout(t, append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...)...)
			assert.Equal(t, 2, code, "stderr:\n%s", stderr)
			assert.Contains(t, stderr, tc.stderr)
		})
	}
}

// TestServeJWT: a server started with each way of giving the key refuses a
// handshake without a token or with a token of another key (401 with a
// challenge), and accepts its own tokens in the header (101) and in
// ?token=, where the user topic is subscribed.
func TestServeJWT(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, envSecret string
		args            []string
		key             any
		issuer          string
	}{
		{"--jwt-secret", "", []string{"--jwt-secret", "flag-secret-of-at-least-32-bytes"}, []byte("flag-secret-of-at-least-32-bytes"), ""},
		// An issuer flag, so that startServe adds no --no-auth.
		{"FANOUT_JWT_SECRET", "env-secret-of-at-least-32-bytes!", []string{"--jwt-issuer", "https://issuer.example"}, []byte("env-secret-of-at-least-32-bytes!"), "https://issuer.example"},
		{"--jwt-public-key", "", []string{"--jwt-public-key", writePublicKey(t, &ec.PublicKey)}, ec, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("FANOUT_JWT_SECRET", tc.envSecret)
			s := startServe(t, tc.args...)
			tok := serveToken(t, tc.key, tc.issuer)

			resp := s.upgrade(t, nil)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Equal(t, `Bearer realm="fanout"`, resp.Header.Get("WWW-Authenticate"))
			resp = s.upgrade(t, http.Header{"Authorization": {"Bearer " + serveToken(t, []byte("other-secret-of-at-least-32-bytes"), tc.issuer)}})
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
			resp = s.upgrade(t, http.Header{"Authorization": {"Bearer " + tok}})
			assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			// /echo is behind the same token.
			assert.Equal(t, http.StatusUnauthorized, s.upgradePath(t, "/echo", nil).StatusCode)
			assert.Equal(t, http.StatusSwitchingProtocols, s.upgradePath(t, "/echo?token="+tok, nil).StatusCode)

			sub := dialSubscriber(t, "gorilla", "ws://"+s.addr+"/ws?token="+tok)
			p, err := sub.read()
			require.NoError(t, err)
			var m message
			require.NoError(t, json.Unmarshal(p, &m))
			assert.Equal(t, message{Type: "subscribed", Topic: "user:alice"}, m, "%s", p)
		})
	}
}

// TestServeAllowedOrigins: with --allowed-origins, a handshake from
// another origin gets 403; a listed origin, or none (not a browser), is
// upgraded.
func TestServeAllowedOrigins(t *testing.T) {
	s := startServe(t, "--allowed-origins", "https://app.example.com")
	for _, tc := range []struct {
		origin string
		status int
	}{
		{"https://evil.example", http.StatusForbidden},
		{"https://app.example.com:8443", http.StatusForbidden},
		{"http://app.example.com", http.StatusForbidden},
		{"https://app.example.com", http.StatusSwitchingProtocols},
		{"", http.StatusSwitchingProtocols},
	} {
		header := http.Header{}
		if tc.origin != "" {
			header.Set("Origin", tc.origin)
		}
		assert.Equal(t, tc.status, s.upgrade(t, header).StatusCode, "Origin %q", tc.origin)
	}
}

// TestServePublishKey: --publish-key (or $FANOUT_PUBLISH_KEY) guards POST
// /publish; --max-publish-bytes bounds its body.
func TestServePublishKey(t *testing.T) {
	t.Setenv("FANOUT_PUBLISH_KEY", "")
	byFlag := startServe(t, "--publish-key", "flag-key", "--max-publish-bytes", "16")
	t.Setenv("FANOUT_PUBLISH_KEY", "env-key")
	byEnv := startServe(t)
	for _, tc := range []struct {
		name          string
		s             *server
		authorization string
		body          string
		status        int
	}{
		{"no key", byFlag, "", `1`, http.StatusUnauthorized},
		{"wrong key", byFlag, "Bearer other-key", `1`, http.StatusUnauthorized},
		{"the key", byFlag, "Bearer flag-key", `1`, http.StatusAccepted},
		{"the key, at the size limit", byFlag, "Bearer flag-key", `"` + strings.Repeat("x", 14) + `"`, http.StatusAccepted},
		{"the key, over the size limit", byFlag, "Bearer flag-key", `"` + strings.Repeat("x", 15) + `"`, http.StatusRequestEntityTooLarge},
		{"env: no key", byEnv, "", `1`, http.StatusUnauthorized},
		{"env: the key", byEnv, "Bearer env-key", `1`, http.StatusAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, "http://"+tc.s.addr+"/publish?topic=keyed", strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			resp, err := httpClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode, "%s", b)
		})
	}
}

// TestServeNoAuthWarning: running open is logged as a warning, and so is
// an open POST /publish; a server with a token key logs neither. An
// --anonymous-publish that can have no effect is said to (it was taken
// silently).
func TestServeNoAuthWarning(t *testing.T) {
	t.Setenv("FANOUT_PUBLISH_KEY", "")
	t.Setenv("FANOUT_JWT_SECRET", "")
	const open, openPublish, noEffect = "running WITHOUT authentication", "POST /publish is open", "--anonymous-publish has no effect"
	for _, tc := range []struct {
		name                     string
		args                     []string
		warn, warnPost, warnAnon bool
	}{
		{"--no-auth", []string{"--no-auth"}, true, true, false},
		{"--no-auth --publish-key", []string{"--no-auth", "--publish-key", "k"}, true, false, false},
		{"--jwt-secret", []string{"--jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret"}, false, false, false},
		{"--no-auth --publish-key --anonymous-publish", []string{"--no-auth", "--publish-key", "k", "--anonymous-publish"}, true, false, false},
		{"--no-auth --anonymous-publish", []string{"--no-auth", "--anonymous-publish"}, true, true, true},
		{"--jwt-secret --anonymous-publish", []string{"--jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret", "--anonymous-publish"}, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServe(t, tc.args...)
			// The warnings come before this line; stderr reaches the
			// buffer through a pipe, so it may lag behind /healthz.
			require.Eventually(t, func() bool { return strings.Contains(s.stderr.String(), "fanout listening") },
				waitTimeout, 10*time.Millisecond)
			log := s.stderr.String()
			assert.Equal(t, tc.warn, strings.Contains(log, "level=WARN msg=\""+open), "%s", log)
			assert.Equal(t, tc.warnPost, strings.Contains(log, "level=WARN msg=\""+openPublish), "%s", log)
			assert.Equal(t, tc.warnAnon, strings.Contains(log, "level=WARN msg=\""+noEffect), "%s", log)
		})
	}
}

// TestServeConnectionLimits: --max-connections and --max-connections-per-ip
// reach the server: past them a new connection gets 503.
func TestServeConnectionLimits(t *testing.T) {
	for _, tc := range []struct {
		flag string
		from []string // source address of each connection; the last is refused
	}{
		{"--max-connections", []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}},
		{"--max-connections-per-ip", []string{"127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.2"}},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			limit := len(tc.from) - 1
			if tc.flag == "--max-connections-per-ip" {
				limit = 2
			}
			s := startServe(t, tc.flag, strconv.Itoa(limit))
			dial := func(from string) net.Conn {
				d := net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
				c, err := d.Dial("tcp", s.addr)
				require.NoError(t, err)
				t.Cleanup(func() { _ = c.Close() })
				return c
			}
			// hold dials a connection that stays silent, in its handshake.
			// The connection of startServe's /healthz probe may not be
			// released yet, and a held one refused for it is dialled again:
			// a held connection is one that gets no 503 at once.
			hold := func(from string) {
				for {
					c := dial(from)
					require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						require.NoError(t, c.SetReadDeadline(time.Time{}))
						return
					}
					require.NoError(t, err)
					require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
					_ = c.Close()
					time.Sleep(20 * time.Millisecond)
				}
			}
			for _, from := range tc.from[:len(tc.from)-1] {
				hold(from)
			}
			c := dial(tc.from[len(tc.from)-1])
			require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		})
	}
}

// TestServePprofBesideUpgrade: four slow profile requests (4 s each) on
// four workers hold no worker: a WebSocket subscriber beside them is
// answered within its own deadline, well before any profile ends (a
// deadline that is generous only for a loaded machine under -race), and the
// profiles complete.
func TestServePprofBesideUpgrade(t *testing.T) {
	s := startServe(t, "--pprof", "--workers", "4")
	profiles := make(chan error, 4)
	for range 4 {
		go func() {
			resp, err := httpClient.Get("http://" + s.addr + "/debug/pprof/heap?seconds=4")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			profiles <- err
		}()
	}
	time.Sleep(200 * time.Millisecond) // the profiles are under way

	start := time.Now()
	deadline := start.Add(2500 * time.Millisecond)
	c, _, err := (&gorilla.Dialer{HandshakeTimeout: time.Until(deadline)}).Dial("ws://"+s.addr+"/ws?topics=p", nil)
	require.NoError(t, err, "upgrade beside four profile requests")
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(deadline))
	_, p, err := c.ReadMessage()
	require.NoError(t, err)
	assert.Contains(t, string(p), `"subscribed"`)
	t.Logf("subscribed in %v beside four profile requests", time.Since(start))
	for range 4 {
		assert.NoError(t, <-profiles, "profile request")
	}
}

// TestServeRequireExp: a token without exp, which would never expire, gets
// 401 by default; --jwt-require-exp=false lets it in.
func TestServeRequireExp(t *testing.T) {
	const secret = "require-exp-secret-of-32-bytes!!"
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "subscribe": []string{"*"},
	}).SignedString([]byte(secret))
	require.NoError(t, err)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--jwt-secret", secret}, http.StatusUnauthorized},
		{[]string{"--jwt-secret", secret, "--jwt-require-exp=false"}, http.StatusSwitchingProtocols},
	} {
		s := startServe(t, tc.args...)
		resp := s.upgrade(t, http.Header{"Authorization": {"Bearer " + tok}})
		assert.Equal(t, tc.want, resp.StatusCode, "%v", tc.args)
		if tc.want == http.StatusUnauthorized {
			assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
		}
	}
}

// TestServeEchoTokenExpiry: an /echo connection opened with a token is
// closed with 4001 at its exp, as a /ws connection is.
func TestServeEchoTokenExpiry(t *testing.T) {
	const secret = "echo-expiry-secret-of-32-bytes!!"
	s := startServe(t, "--jwt-secret", secret)
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second) // 2 to 3 s ahead
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": exp.Unix()}).SignedString([]byte(secret))
	require.NoError(t, err)
	c, _, err := (&gorilla.Dialer{HandshakeTimeout: waitTimeout}).Dial("ws://"+s.addr+"/echo?token="+tok, nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
	require.NoError(t, c.WriteMessage(gorilla.TextMessage, []byte("before exp")))
	_, p, err := c.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, "before exp", string(p))

	// Echoes go on until exp; then the sweep closes with 4001.
	for err == nil {
		if err = c.WriteMessage(gorilla.TextMessage, []byte("ping")); err == nil {
			_, _, err = c.ReadMessage()
		}
		if err == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	assert.Equal(t, 4001, closeCode(err), "%v", err)
	assert.False(t, time.Now().Before(exp), "closed before exp")
}

// TestServeAnonymousPublish: with --no-auth and --publish-key, a WebSocket
// publish (no token, so no key) is refused with forbidden and delivers
// nothing; --anonymous-publish allows it.
func TestServeAnonymousPublish(t *testing.T) {
	t.Setenv("FANOUT_PUBLISH_KEY", "")
	for _, tc := range []struct {
		args []string
		want string // the reply's type, or the error's code
	}{
		{[]string{"--no-auth", "--publish-key", "k"}, "forbidden"},
		{[]string{"--no-auth", "--publish-key", "k", "--anonymous-publish"}, "published"},
		{[]string{"--no-auth"}, "published"}, // open to all, as its warning says
	} {
		s := startServe(t, tc.args...)
		sub := dialSubscriber(t, "gorilla", "ws://"+s.addr+"/ws?topics=anon")
		_, err := sub.read() // subscribed
		require.NoError(t, err)
		pub, _, err := (&gorilla.Dialer{HandshakeTimeout: waitTimeout}).Dial("ws://"+s.addr+"/ws", nil)
		require.NoError(t, err)
		require.NoError(t, pub.WriteMessage(gorilla.TextMessage, []byte(`{"type":"publish","topic":"anon","data":1}`)))
		require.NoError(t, pub.SetReadDeadline(time.Now().Add(waitTimeout)))
		_, p, err := pub.ReadMessage()
		require.NoError(t, err)
		var reply struct{ Type, Code string }
		require.NoError(t, json.Unmarshal(p, &reply))
		got := reply.Type
		if got == "error" {
			got = reply.Code
		}
		assert.Equal(t, tc.want, got, "%v: %s", tc.args, p)
		// What the subscriber gets next: the message, or, when the
		// publish was refused, the one the key publishes after it.
		if tc.want == "forbidden" {
			req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/publish?topic=anon", strings.NewReader(`2`))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer k")
			resp, err := httpClient.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusAccepted, resp.StatusCode)
		}
		p, err = sub.read()
		require.NoError(t, err)
		var m message
		require.NoError(t, json.Unmarshal(p, &m))
		assert.Equal(t, uint64(1), m.Seq, "%s", p)
		if tc.want == "forbidden" {
			assert.Equal(t, "2", string(m.Data), "the refused publish delivered nothing")
		}
		_ = pub.Close()
	}
}

// TestServeMessageLimits: byte-size flags take KiB/MiB/GiB; /echo takes
// messages up to --max-message-bytes (1 MiB by default, for conformance
// suites), while /ws refuses (1009) any message longer than the protocol
// can accept, a publish of --max-publish-bytes and its envelope, before it
// is buffered or decoded.
func TestServeMessageLimits(t *testing.T) {
	s := startServe(t, "--no-auth", "--max-publish-bytes", "16KiB", "--max-message-bytes", "1MiB", "--max-queue-bytes", "2MiB")
	big := bytes.Repeat([]byte("x"), 512<<10)

	echo, _, err := gorilla.DefaultDialer.Dial("ws://"+s.addr+"/echo", nil)
	require.NoError(t, err)
	defer echo.Close()
	require.NoError(t, echo.WriteMessage(gorilla.TextMessage, big))
	_, got, err := echo.ReadMessage()
	require.NoError(t, err)
	assert.Len(t, got, len(big), "/echo takes 512 KiB")

	ws, _, err := gorilla.DefaultDialer.Dial("ws://"+s.addr+"/ws", nil)
	require.NoError(t, err)
	defer ws.Close()
	// The largest publish goes through.
	data := `"` + strings.Repeat("y", 16<<10-2) + `"`
	require.NoError(t, ws.WriteMessage(gorilla.TextMessage, []byte(`{"type":"publish","topic":"t","data":`+data+`}`)))
	_, got, err = ws.ReadMessage()
	require.NoError(t, err)
	assert.Contains(t, string(got), `"published"`)
	// 512 KiB is far past it: closed with 1009.
	require.NoError(t, ws.WriteMessage(gorilla.TextMessage, big))
	_, _, err = ws.ReadMessage()
	var ce *gorilla.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, gorilla.CloseMessageTooBig, ce.Code)

	code, _, stderr := runFanout(t, "serve", "--no-auth", "--listen", "127.0.0.1:0", "--max-queue-bytes", "1MB")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "max-queue-bytes")
}

// TestServeMetrics: GET /metrics is Prometheus text that a Prometheus
// parser reads, with the server's, the hub's, Go's and the process's
// metrics, and they move with traffic.
func TestServeMetrics(t *testing.T) {
	s := startServe(t, "--no-auth")
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+s.addr+"/ws?topics=m", nil)
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadMessage() // subscribed
	require.NoError(t, err)
	resp, err := httpClient.Post("http://"+s.addr+"/publish?topic=m", "application/json", strings.NewReader(`{"x":1}`))
	require.NoError(t, err)
	_ = resp.Body.Close()
	_, _, err = c.ReadMessage() // the message
	require.NoError(t, err)
	_, resp404, err := gorilla.DefaultDialer.Dial("ws://"+s.addr+"/nope", nil)
	require.Error(t, err)
	require.Equal(t, http.StatusNotFound, resp404.StatusCode)

	resp, err = httpClient.Get("http://" + s.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f, ok := families[name]
		require.True(t, ok, "metric %s", name)
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		t.Fatalf("metric %s%v not found", name, labels)
		return 0
	}
	assert.Equal(t, 1.0, value("fanout_websockets"))
	assert.GreaterOrEqual(t, value("fanout_connections"), 1.0)
	assert.Equal(t, 1.0, value("fanout_handshakes_total", "outcome", "101"))
	assert.Equal(t, 1.0, value("fanout_handshakes_total", "outcome", "404"))
	assert.Equal(t, 1.0, value("fanout_publishes_total"))
	assert.Equal(t, 1.0, value("fanout_deliveries_total"))
	assert.Equal(t, 1.0, value("fanout_fanout_latency_seconds"))
	assert.Equal(t, 1.0, value("fanout_topics"))
	assert.Equal(t, 1.0, value("fanout_history_messages"))
	assert.Positive(t, value("fanout_history_bytes"))
	assert.Equal(t, 1.0, value("fanout_subscriptions"))
	for _, name := range []string{
		"fanout_queued_bytes", "fanout_drops_total", "fanout_slow_consumer_disconnects_total",
		"fanout_messages_in_total", "fanout_handshakes_in_flight", "fanout_history_evicted_total",
		"fanout_messages_inflated_total", "fanout_compressed_upgrades_total", "fanout_compressed_clients",
		"fanout_messages_compressed_total", "fanout_compressed_deliveries_total", "fanout_compressed_bytes_saved_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		value(name)
	}
	value("fanout_close_codes_sent_total", "code", "1001")
}

// TestVersion: "fanout version" names the module version and the Go
// version, and the VCS revision when the build recorded one.
func TestVersion(t *testing.T) {
	code, stdout, _ := runFanout(t, "version")
	assert.Equal(t, 0, code)
	assert.Regexp(t, `^fanout \S+( revision [0-9a-f]{40}( \(modified\))?( of \S+)?)? go1\.\d+`, stdout)

	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-07T02:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	assert.Equal(t, "fanout v1.2.3 revision 0123456789abcdef0123456789abcdef01234567 (modified) of 2026-12-07T02:00:00Z go1.26.8", formatVersion(info))
	assert.Equal(t, "fanout (devel) go1.26.8", formatVersion(&debug.BuildInfo{GoVersion: "go1.26.8"}))
}

// TestServeFlagsSayNo: flag values that would start a server that does not
// do what they say are refused with exit 2 and a line naming the flag; they
// used to start silently.
func TestServeFlagsSayNo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string // named in the error
	}{
		{[]string{"--workers", "-1"}, "--workers"},
		{[]string{"--shards", "-2"}, "--shards"},
		{[]string{"--max-subscriptions", "0"}, "--max-subscriptions"},
		{[]string{"--max-topics", "-5"}, "--max-topics"},
		{[]string{"--max-connections", "-1"}, "--max-connections"},
		{[]string{"--max-queue-bytes", "0"}, "--max-queue-bytes"},
		{[]string{"--max-message-bytes", "2GiB"}, "--max-message-bytes"},
		{[]string{"--max-header-bytes", "100"}, "--max-header-bytes"},
		{[]string{"--handshake-timeout", "0s"}, "--handshake-timeout"},
		{[]string{"--http-keepalive-requests", "0"}, "--http-keepalive-requests"},
		{[]string{"--http-idle-timeout", "0s"}, "--http-idle-timeout"},
		{[]string{"--frame-timeout", "-1s"}, "--frame-timeout"},
		{[]string{"--history-age", "-1m"}, "--history-age"},
		{[]string{"--max-message-rate", "-3"}, "--max-message-rate"},
		{[]string{"--ping-interval", "30s", "--idle-timeout", "20s"}, "--idle-timeout"},
		{[]string{"--ping-interval", "30s", "--idle-timeout", "30s"}, "--idle-timeout"},
		// Refused by the flag package: one line too, not the usage after it.
		{[]string{"--max-message-bytes", "-1"}, "max-message-bytes"},
		{[]string{"--max-history-bytes", "-1"}, "max-history-bytes"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--listen", "nowhere"}, "--listen"},
		{[]string{"--send-buffer-bytes", "1GiB"}, "--send-buffer-bytes"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runFanout(t, append([]string{"serve", "--no-auth", "--listen", "127.0.0.1:0"}, tc.args...)...)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr, tc.flag)
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
		})
	}
	// Zero where zero has a meaning still starts.
	startServe(t, "--no-auth", "--ping-interval", "0", "--idle-timeout", "0", "--workers", "0", "--max-connections-per-ip", "0")
}

// TestServeCompression: on /ws a client that offers permessage-deflate
// subscribes and publishes with compressed messages; --compression=false
// turns the offer away.
func TestServeCompression(t *testing.T) {
	s := startServe(t)
	d := gorilla.Dialer{HandshakeTimeout: waitTimeout, EnableCompression: true}
	c, resp, err := d.Dial("ws://"+s.addr+"/ws", nil)
	require.NoError(t, err)
	defer c.Close()
	assert.Contains(t, resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))

	require.NoError(t, c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"subscribe","topic":"z","id":1}`)))
	_, p, err := c.ReadMessage()
	require.NoError(t, err)
	assert.Contains(t, string(p), `"subscribed"`)
	require.NoError(t, c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"publish","topic":"z","data":[`+strings.Repeat(`{"price":101.5},`, 99)+`{"price":101.5}]}`)))
	for range 2 { // the published reply and the message, in either order
		_, p, err = c.ReadMessage()
		require.NoError(t, err)
		if !strings.Contains(string(p), `"type"`) {
			assert.Contains(t, string(p), `"seq":1`)
			assert.Equal(t, 100, strings.Count(string(p), `{"price":101.5}`))
		}
	}
	resp2, err := httpClient.Get("http://" + s.addr + "/stats")
	require.NoError(t, err)
	defer resp2.Body.Close()
	var st struct {
		Server struct {
			CompressedUpgrades uint64 `json:"compressed_upgrades"`
			MessagesInflated   uint64 `json:"messages_inflated"`
		} `json:"server"`
		Hub struct {
			MessagesCompressed   uint64 `json:"messages_compressed"`
			CompressedDeliveries uint64 `json:"compressed_deliveries"`
			CompressedBytesSaved uint64 `json:"compressed_bytes_saved"`
		} `json:"hub"`
	}
	require.NoError(t, json.NewDecoder(resp2.Body).Decode(&st))
	assert.Equal(t, uint64(1), st.Server.CompressedUpgrades)
	assert.Equal(t, uint64(2), st.Server.MessagesInflated)
	// The message came back compressed: it is over --compression-min-bytes.
	assert.Equal(t, uint64(1), st.Hub.MessagesCompressed)
	assert.Equal(t, uint64(1), st.Hub.CompressedDeliveries)
	assert.Positive(t, st.Hub.CompressedBytesSaved)

	off := startServe(t, "--compression=false")
	c2, resp, err := d.Dial("ws://"+off.addr+"/ws?topics=z", nil)
	require.NoError(t, err)
	defer c2.Close()
	assert.Empty(t, resp.Header.Get("Sec-WebSocket-Extensions"))
}

// TestRefusalLogsNoURL: the log line of a refused handshake gives a reason
// with nothing of the request's URL, at any level: the path of a 404 (a
// client put its token there), the topics of a 400 and of a 403. They were
// logged as the client was told them.
func TestRefusalLogsNoURL(t *testing.T) {
	secret := "s3cret-s3cret-s3cret-s3cret-s3cret"
	s := startServe(t, "--jwt-secret", secret, "--log-level", "debug")
	tok, err := auth.SignHS256([]byte(secret), auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        jwt.ClaimStrings{"granted"},
	})
	require.NoError(t, err)
	d := gorilla.Dialer{HandshakeTimeout: waitTimeout}
	h := http.Header{"Authorization": {"Bearer " + tok}}
	for _, tc := range []struct {
		path   string
		status int
		told   string // in the response's body
	}{
		{"/ws/token/SECRET1", http.StatusNotFound, "/ws/token/SECRET1"},
		{"/ws?topics=granted,a%20SECRET2", http.StatusBadRequest, `"a SECRET2"`},
		{"/ws?topics=SECRET3", http.StatusForbidden, `"SECRET3"`},
	} {
		_, resp, err := d.Dial("ws://"+s.addr+tc.path, h)
		require.Error(t, err, tc.path)
		require.NotNil(t, resp, tc.path)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, tc.status, resp.StatusCode, tc.path)
		assert.Contains(t, string(body), tc.told, "the client is told: %s", tc.path)
	}
	require.Eventually(t, func() bool { return strings.Count(s.stderr.String(), "handshake refused") == 3 },
		waitTimeout, 10*time.Millisecond, "one line per status: %s", s.stderr.String())
	assert.NotContains(t, s.stderr.String(), "SECRET")
	assert.Contains(t, s.stderr.String(), `reason="no WebSocket endpoint at this path"`)
	assert.Contains(t, s.stderr.String(), `reason="invalid topic name"`)
	assert.Contains(t, s.stderr.String(), `reason="token does not grant a topic of the query"`)
}

// TestServeSendBuffer: --send-buffer-bytes bounds what a subscriber that
// reads nothing holds in the kernel, so that it is a slow consumer once that
// and --max-queue-bytes are full: 60 messages of 8 KB disconnect it. The
// kernel grew the send buffer of such a client to 4 MiB (500 such messages
// went unread before the 4008, in a helper's run).
func TestServeSendBuffer(t *testing.T) {
	s := startServe(t, "--send-buffer-bytes", "16KiB", "--max-queue-bytes", "64KiB")
	nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	d := gorilla.Dialer{HandshakeTimeout: waitTimeout, NetDialContext: nd.DialContext}
	c, _, err := d.Dial("ws://"+s.addr+"/ws?topics=slow", nil)
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadMessage() // subscribed; nothing more is read
	require.NoError(t, err)
	data := `"` + strings.Repeat("x", 8000) + `"`
	for range 60 {
		_, err := s.post("slow", data)
		require.NoError(t, err)
	}
	var st struct {
		Hub struct {
			SlowConsumerDisconnects uint64 `json:"slow_consumer_disconnects"`
		} `json:"hub"`
	}
	require.Eventually(t, func() bool {
		resp, err := httpClient.Get("http://" + s.addr + "/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Hub.SlowConsumerDisconnects == 1
	}, waitTimeout, 20*time.Millisecond, "the subscriber that reads nothing is a slow consumer")
}
