package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var screenshot = flag.String("screenshot", "", "TestLivePageInBrowser: after a little load, save a PNG of the page to this `file` (docs/page.png)")

// TestServePageFlag: the live page is on by default without
// authentication, off with --page=false, off with authentication unless
// --page is given, and its summary is bounded JSON that says whether the
// console needs a token.
func TestServePageFlag(t *testing.T) {
	secret := strings.Repeat("s", 32)
	for _, tc := range []struct {
		name string
		args []string
		on   bool
		auth bool
	}{
		{"no-auth default", nil, true, false},
		{"no-auth --page=false", []string{"--page=false"}, false, false},
		{"auth default", []string{"--jwt-secret", secret}, false, true},
		{"auth --page", []string{"--jwt-secret", secret, "--page"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServe(t, tc.args...)
			for _, path := range []string{"/", "/page/page.js", "/page/page.css", "/page/summary"} {
				resp, err := httpClient.Get("http://" + s.addr + path)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				require.NoError(t, err)
				if !tc.on {
					assert.Equal(t, http.StatusNotFound, resp.StatusCode, path)
					continue
				}
				require.Equal(t, http.StatusOK, resp.StatusCode, path)
				assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'", path)
				if path == "/page/summary" {
					var sum struct {
						Auth bool `json:"auth"`
						Now  struct {
							Connections *int64 `json:"connections"`
						} `json:"now"`
						Samples []json.RawMessage `json:"samples"`
						Top     []json.RawMessage `json:"top"`
					}
					require.NoError(t, json.Unmarshal(body, &sum), "%s", body)
					assert.Equal(t, tc.auth, sum.Auth)
					assert.NotNil(t, sum.Now.Connections)
					assert.NotNil(t, sum.Top, "top is a list, empty or not")
				}
			}
		})
	}
	// The browser client is served whether the page is on or not.
	for _, args := range [][]string{nil, {"--page=false"}} {
		s := startServe(t, args...)
		resp, err := httpClient.Get("http://" + s.addr + "/fanout.js")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/javascript; charset=utf-8", resp.Header.Get("Content-Type"))
		assert.Contains(t, string(body), "export class Client")
	}
	code, _, stderr := runFanout(t, "serve", "--no-auth", "--page=maybe")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "-page")
}

// chromium returns the path of a Chromium or Chrome binary. The browser
// test needs one: it fails without it, in CI as anywhere, unless
// FANOUT_SKIP_BROWSER=1 says to skip it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FANOUT_SKIP_BROWSER") == "1" {
		t.Skip("no Chromium, and FANOUT_SKIP_BROWSER=1")
	}
	t.Fatal("no chromium in PATH: install it (apt-get install chromium), or set FANOUT_SKIP_BROWSER=1 to skip this test")
	return ""
}

// browserPage is a page open in headless Chromium, with every console
// error, warning and exception it logged.
type browserPage struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

// openPage opens url in a fresh headless Chromium, which is closed when
// the test ends; every action must be done within budget.
func openPage(t *testing.T, url string, budget time.Duration) *browserPage {
	t.Helper()
	exe := chromium(t)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in CI containers
		chromedp.WindowSize(1280, 1000),
	)...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, budget)
	t.Cleanup(cancel)
	p := &browserPage{t: t, ctx: ctx}

	// Every console message of the page, from the first action on.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				p.mu.Lock()
				p.problems = append(p.problems, fmt.Sprintf("%s (%s %s:%d)", m, m.Source, m.URL, m.Line))
				p.mu.Unlock()
			}
		}
	}()
	p.do(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#connections")))
	return p
}

func (p *browserPage) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	require.NoError(p.t, chromedp.Do(p.ctx, steps...))
}

// text polls the text of the element sel selects until ok accepts it.
func (p *browserPage) text(sel string, ok func(string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got, err := chromedp.Run(p.ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(p.t, err)
		if ok(got) {
			return got
		}
		require.True(p.t, time.Now().Before(deadline), "%s: %q", sel, got)
		time.Sleep(100 * time.Millisecond)
	}
}

// display returns the computed CSS display of the element with id.
func (p *browserPage) display(id string) string {
	p.t.Helper()
	d, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`getComputedStyle(document.getElementById("`+id+`")).display`))
	require.NoError(p.t, err)
	return d
}

// clean checks that the page logged no error, warning or exception but
// those that contain one of the expected strings.
func (p *browserPage) clean(expected ...string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var left []string
	for _, m := range p.problems {
		if !slices.ContainsFunc(expected, func(e string) bool { return strings.Contains(m, e) }) {
			left = append(left, m)
		}
	}
	assert.Empty(p.t, left, "the page logged errors or warnings")
}

func number(s string) (int, bool) {
	n, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
	return n, err == nil
}

// TestLivePageInBrowser opens the live page in headless Chromium: it loads
// with no console error, its connection count follows clients that
// connect, its topic list shows their topic, and its console subscribes
// over the page's own WebSocket and receives a message published over HTTP.
func TestLivePageInBrowser(t *testing.T) {
	s := startServe(t)
	budget := 2 * waitTimeout
	if *screenshot != "" {
		budget += loadTime
	}
	p := openPage(t, "http://"+s.addr+"/", budget)

	// Without authentication the console asks for no token.
	assert.Equal(t, "none", p.display("token-row"), "the token field shows without authentication")
	before, _ := number(p.text("#connections", func(s string) bool { _, ok := number(s); return ok }))

	const clients = 3
	for range clients {
		c := dialSubscriber(t, "gorilla", "ws://"+s.addr+"/ws?topics=watched")
		_, err := c.read() // subscribed
		require.NoError(t, err)
	}
	p.text("#connections", func(s string) bool { n, ok := number(s); return ok && n == before+clients })
	p.text("#top", func(s string) bool { return strings.Contains(s, "watched") })

	// The console: subscribe over the page's WebSocket, then publish over
	// HTTP, and the message shows in its log.
	p.do(chromedp.SetValue(chromedp.CSS("#topic"), "browser"), chromedp.Click(chromedp.CSS("#subscribe")))
	p.text("#log", func(s string) bool { return strings.Contains(s, `· subscribed {"topic":"browser"`) })
	_, err := s.post("browser", `{"from":"http"}`)
	require.NoError(t, err)
	p.text("#log", func(s string) bool { return strings.Contains(s, `{"topic":"browser","seq":1,"data":{"from":"http"}}`) })
	// And a publish from the console itself comes back to it.
	p.do(chromedp.SetValue(chromedp.CSS("#data"), `{"from":"page"}`), chromedp.Click(chromedp.CSS("#publish")))
	p.text("#log", func(s string) bool { return strings.Contains(s, `"seq":2,"data":{"from":"page"}`) })
	// The page's own WebSocket counts too.
	p.text("#connections", func(s string) bool { n, ok := number(s); return ok && n == before+clients+1 })

	if *screenshot != "" {
		stop := load(t, s)
		time.Sleep(loadTime)
		p.text("#rate", func(s string) bool { n, ok := number(s); return ok && n > 0 })
		png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		stop()
		require.NoError(t, os.WriteFile(*screenshot, png, 0o644))
	}
	p.clean()
}

// TestLivePageInBrowserWithAuth: with authentication and --page, the
// console asks for a token and connects with it (?token=), and receives
// what a publisher with a token publishes.
func TestLivePageInBrowserWithAuth(t *testing.T) {
	secret := strings.Repeat("k", 32)
	s := startServe(t, "--jwt-secret", secret, "--page")
	mint := func(claims jwt.MapClaims) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		require.NoError(t, err)
		return tok
	}
	p := openPage(t, "http://"+s.addr+"/", 2*waitTimeout)

	// The summary says auth is on, and the page shows the token field.
	deadline := time.Now().Add(waitTimeout)
	for p.display("token-row") == "none" {
		require.True(t, time.Now().Before(deadline), "the token field never shows")
		time.Sleep(100 * time.Millisecond)
	}
	p.do(
		chromedp.SetValue(chromedp.CSS("#token"), mint(jwt.MapClaims{"sub": "operator", "subscribe": "ops.*"})),
		chromedp.SetValue(chromedp.CSS("#topic"), "ops.alerts"),
		chromedp.Click(chromedp.CSS("#subscribe")),
	)
	p.text("#log", func(s string) bool { return strings.Contains(s, `· subscribed {"topic":"ops.alerts"`) })

	req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/publish?topic=ops.alerts", strings.NewReader(`{"disk":"full"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+mint(jwt.MapClaims{"sub": "service", "publish": "ops.*"}))
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	p.text("#log", func(s string) bool {
		return strings.Contains(s, `{"topic":"ops.alerts","seq":1,"data":{"disk":"full"}}`)
	})
	p.clean()
}

// loadTime is how long the page watches load before its screenshot.
const loadTime = 30 * time.Second

// load connects a hundred subscribers over a few topics and publishes to
// them until stop is called, so that the page's charts have something to
// show.
func load(t *testing.T, s *server) (stop func()) {
	t.Helper()
	topics := []string{"prices", "chat.lobby", "news", "alerts"}
	for i := range 100 {
		topic := topics[min(i%7, len(topics)-1)]
		c := dialSubscriber(t, "coder", "ws://"+s.addr+"/ws?topics="+topic)
		go func() {
			for {
				if _, err := c.read(); err != nil {
					return
				}
			}
		}()
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(5+i%20) * time.Millisecond):
			}
			if _, err := s.post(topics[i%len(topics)], fmt.Sprintf(`{"n":%d}`, i)); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// TestLivePageConsoleRefused: when the server refuses the console's
// WebSocket (here for its origin), the console says so, rather than
// waiting in silence.
func TestLivePageConsoleRefused(t *testing.T) {
	s := startServe(t, "--allowed-origins", "https://other.example")
	p := openPage(t, "http://"+s.addr+"/", 2*waitTimeout)
	p.do(chromedp.Click(chromedp.CSS("#subscribe")))
	p.text("#log", func(s string) bool { return strings.Contains(s, "could not connect") })
	// Chromium itself reports the failed handshake on the console.
	p.clean("WebSocket connection to")
}

// eval evaluates expr in the page, awaiting a promise, and returns its
// value.
func eval[T any](p *browserPage, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(p.t, err, "%s", expr)
	return v
}

// waitEval polls expr, a boolean, until it holds.
func waitEval(p *browserPage, what, expr string) {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !eval[bool](p, expr) {
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting for %s (%s); events: %s", what, expr, eval[string](p, `JSON.stringify(window.events)`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// subscribeJS imports /fanout.js in the page and subscribes its Client,
// connected to the page's own server, to topic: window.got collects the
// seqs delivered, window.events the events, and window.fc is the client.
func subscribeJS(p *browserPage, topic string) {
	p.t.Helper()
	eval[bool](p, `import("/fanout.js").then(({ Client }) => {
		window.got = [];
		window.events = [];
		window.fc = new Client(location.origin.replace("http", "ws"), {
			minBackoff: 20, maxBackoff: 300,
			onEvent: (e) => window.events.push(e),
		});
		window.fc.subscribe(`+strconv.Quote(topic)+`, (m) => window.got.push(m.seq));
		return true;
	})`)
}

// TestFanoutJSAcrossRestart drives /fanout.js in headless Chromium: its
// client gets each message once and in order, reconnects when the server
// restarts in the middle, reports what the restart lost as a new_epoch
// event, delivers what follows, and publishes.
func TestFanoutJSAcrossRestart(t *testing.T) {
	s := startServe(t)
	p := openPage(t, "http://"+s.addr+"/", 3*waitTimeout)
	subscribeJS(p, "js")
	waitEval(p, "subscribed", `window.events.some((e) => e.kind === "subscribed" && e.topic === "js")`)
	for i := 1; i <= 3; i++ {
		_, err := s.post("js", fmt.Sprintf(`{"n":%d}`, i))
		require.NoError(t, err)
	}
	waitEval(p, "three messages", `window.got.length === 3`)
	assert.Equal(t, "[1,2,3]", eval[string](p, `JSON.stringify(window.got)`))

	// The restart: SIGTERM (close 1001 to the page), a new server on the
	// same address with no history, and messages published as the client
	// comes back.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, s.wait(t))
	s = startServeAt(t, s.addr)
	for i := 1; i <= 2; i++ {
		_, err := s.post("js", fmt.Sprintf(`{"after":%d}`, i))
		require.NoError(t, err)
	}
	waitEval(p, "the loss", `window.events.some((e) => e.kind === "lost")`)
	lost := eval[map[string]any](p, `window.events.find((e) => e.kind === "lost")`)
	assert.Equal(t, "new_epoch", lost["reason"])
	assert.EqualValues(t, 3, lost["prevSeq"])
	to := int(lost["to"].(float64))
	// A publish from the page itself, over HTTP.
	assert.EqualValues(t, 3, eval[float64](p, `window.fc.publish("js", { from: "page" })`))
	waitEval(p, "the last message", `window.got[window.got.length - 1] === 3`)
	want := []int{1, 2, 3}
	for q := to + 1; q <= 3; q++ {
		want = append(want, q)
	}
	wantJSON, _ := json.Marshal(want)
	assert.Equal(t, string(wantJSON), eval[string](p, `JSON.stringify(window.got)`), "every seq once, or inside the loss")
	assert.Equal(t, 1, eval[int](p, `window.events.filter((e) => e.kind === "lost").length`))
	eval[bool](p, `window.fc.close(), true`)
	// The restart's failed connection attempts are the browser's to log.
	p.clean("WebSocket connection to")
}
