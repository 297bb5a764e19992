// Command fanout is a WebSocket server for very many connections and large
// fan-out broadcasts.
//
// Usage:
//
//	fanout [serve] [flags]
//
// Run "fanout serve --help" for the flags.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/bench"
	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client/js"
	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/page"
	"github.com/fanout/fanout/wsconn"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "bench":
		return bench.Main(args, stdout, stderr)
	case "sub":
		return sub(args, stdout, stderr)
	case "pub":
		return pub(args, os.Stdin, stdout, stderr)
	case "help":
		usage(stdout)
		return 0
	case "version":
		version(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "fanout: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `fanout: a WebSocket server for very many connections and large fan-out broadcasts.

Usage:
  fanout [serve] [flags]   run the server (the default command)
  fanout bench SCENARIO    load-test a server; "fanout bench --help" explains
  fanout sub TOPIC...      print a server's messages as JSON lines, reconnecting and recovering
  fanout pub TOPIC [DATA]  publish DATA, or each line of the standard input
  fanout version           show the version and VCS revision it was built from
  fanout help              show this text

Run "fanout serve --help" for the server's flags.
`)
}

// stats is the body of GET /stats.
type stats struct {
	Server      wsconn.Stats    `json:"server"`
	Hub         broadcast.Stats `json:"hub"`
	QueuedBytes int64           `json:"queued_bytes"`
	Process     processStats    `json:"process"`
}

// serveOptions are the flags of "fanout serve".
type serveOptions struct {
	listen          string
	workers         int
	maxMessageBytes byteSize
	maxQueueBytes   byteSize
	sendBufferBytes byteSize
	maxHeaderBytes  byteSize
	maxHandshakes   int
	maxHTTPHandlers int
	httpKeepAlive   int
	httpIdle        time.Duration
	compression     bool
	compressMin     byteSize
	maxConns        int
	maxConnsPerIP   int
	handshake       time.Duration
	shutdown        time.Duration
	echo            bool
	logLevel        slog.Level

	shards           int
	historySize      int
	historyAge       time.Duration
	maxSubscriptions int
	maxTopicBytes    int
	maxTopics        int
	maxHistoryBytes  byteSize
	slowConsumer     string
	pingInterval     time.Duration
	idleTimeout      time.Duration
	frameTimeout     time.Duration
	pprof            bool
	returnMemory     bool
	maxPublishBytes  byteSize
	messageRate      float64
	byteRate         byteSize
	messageBurst     int

	noAuth         bool
	jwtSecret      string
	jwtPublicKey   string
	jwtIssuer      string
	jwtAudience    string
	jwtLeeway      time.Duration
	jwtRequireExp  bool
	anonPublish    bool
	publishKey     string
	allowedOrigins string
	page           pageFlag

	nats              string
	natsCreds         string
	natsStream        string
	natsSubjectPrefix string
}

func (o *serveOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", ":8080", "`HOST:PORT` to listen on for WebSocket and HTTP")
	fs.IntVar(&o.workers, "workers", 0, "worker goroutines that serve ready connections (0: 2 × GOMAXPROCS, at least 4)")
	o.maxMessageBytes, o.maxQueueBytes, o.maxHeaderBytes = 1<<20, 1<<20, 8<<10
	fs.Var(&o.maxMessageBytes, "max-message-bytes", "largest client message in `bytes` (at most 2GiB-1), all fragments together; a longer one is closed with 1009 (on /ws, also at most --max-publish-bytes plus 1KiB and --max-topic-bytes)")
	o.sendBufferBytes = 256 << 10
	fs.Var(&o.sendBufferBytes, "send-buffer-bytes", "each connection's kernel send buffer in `bytes` (SO_SNDBUF; Linux doubles it and caps it at net.core.wmem_max; a BSD that refuses so much gets it halved until it takes it): what a client that does not read holds in the kernel beyond --max-queue-bytes (0: the system's, which grows to tcp_wmem's max, 4 MiB on Linux)")
	fs.Var(&o.maxQueueBytes, "max-queue-bytes", "per-connection write queue limit in `bytes`, each queued frame counting 48 beyond its own; past it the connection stops reading (echo) or is a slow consumer")
	fs.Var(&o.maxHeaderBytes, "max-header-bytes", "largest HTTP request head in `bytes`; a larger one gets 431")
	fs.IntVar(&o.maxConns, "max-connections", 0, "connections held, upgraded or not; past it new ones get 503 (0: the open-file limit minus 64)")
	fs.IntVar(&o.maxConnsPerIP, "max-connections-per-ip", 0, "connections from one source IP address; past it new ones get 503 (0: no limit; behind a proxy, limit per IP there)")
	fs.IntVar(&o.maxHandshakes, "max-handshakes", 10000, "connections accepted but not yet upgraded; past it new ones get 503")
	fs.IntVar(&o.maxHTTPHandlers, "max-http-handlers", 256, "plain HTTP requests (publish, stats, profiles) handled at once, each on its own goroutine; past it 503")
	fs.IntVar(&o.httpKeepAlive, "http-keepalive-requests", 1000, "plain HTTP requests one connection may carry; the last is answered with Connection: close (1: no keep-alive)")
	fs.DurationVar(&o.httpIdle, "http-idle-timeout", 30*time.Second, "how long a kept-alive HTTP connection may wait for its next request")
	fs.BoolVar(&o.compression, "compression", true, "accept permessage-deflate from clients that offer it (no context takeover either way); false turns it away")
	o.compressMin = 256
	fs.Var(&o.compressMin, "compression-min-bytes", "smallest message payload (the envelope a subscriber reads), in `bytes`, compressed for subscribers that negotiated permessage-deflate; smaller ones go plain")
	fs.DurationVar(&o.handshake, "handshake-timeout", 5*time.Second, "absolute time a client has to send its upgrade request")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long connections have to drain their queues, close 1001 last, and close")
	fs.BoolVar(&o.echo, "echo", true, "serve the /echo endpoint, which echoes every message (for conformance suites and the bench)")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")

	fs.IntVar(&o.shards, "shards", 0, "hub shards that fan messages out, each a goroutine (0: 2 × GOMAXPROCS)")
	fs.IntVar(&o.historySize, "history-size", 1000, "messages each topic keeps for recovery with since (0: the default, negative: none)")
	fs.DurationVar(&o.historyAge, "history-age", 5*time.Minute, "how long a message stays in a topic's history")
	fs.IntVar(&o.maxSubscriptions, "max-subscriptions", 100, "topics one connection may subscribe to, besides its user's own")
	fs.IntVar(&o.maxTopicBytes, "max-topic-bytes", 128, "longest topic name; names are ASCII letters, digits and -_.:@/")
	fs.IntVar(&o.maxTopics, "max-topics", 100_000, "topics the server holds; a publish or subscribe that would create one more is refused (503, error too_many_topics)")
	o.maxHistoryBytes = 256 << 20
	fs.Var(&o.maxHistoryBytes, "max-history-bytes", "history of all topics together in `bytes`, each message counting 64 beyond its own; past it the oldest messages, whichever their topic, are dropped (0: no bound but --history-size and --history-age)")
	fs.StringVar(&o.slowConsumer, "slow-consumer", "disconnect", "`policy` for a subscriber whose write queue is full: disconnect (close code 4008) or drop (skip the message; a dropped notice tells the client)")
	fs.DurationVar(&o.pingInterval, "ping-interval", 30*time.Second, "ping a connection after this much silence (0: never)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 75*time.Second, "close a connection (1001) after this much silence; a pong counts as traffic (0: never)")
	fs.BoolVar(&o.returnMemory, "return-memory", true, "once a storm of connections opened or closed is over, collect the garbage it left and return free memory to the OS at once, not over minutes (at most once a minute)")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go's profiles at /debug/pprof/ (for diagnosis; do not expose publicly)")
	o.maxPublishBytes, o.byteRate = 64<<10, 1<<20
	fs.Var(&o.maxPublishBytes, "max-publish-bytes", "largest published message data in `bytes` (POST /publish body or publish message data); larger gets 413 or error too_large")
	fs.Float64Var(&o.messageRate, "max-message-rate", 100, "messages per second one /ws client may send (token bucket; 0: no limit); over it a message gets error rate_limited, and a client that keeps on is closed with 1008")
	fs.Var(&o.byteRate, "max-byte-rate", "`bytes` per second one /ws client may send, counted in the --max-message-rate bucket: a message costs max(1, its bytes × the message rate / this) (0: messages only)")
	fs.IntVar(&o.messageBurst, "message-burst", 0, "bucket size of --max-message-rate in messages (0: 2 × the rate)")

	fs.BoolVar(&o.noAuth, "no-auth", false, "INSECURE: serve without authentication; anyone may subscribe to and publish on any topic")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "HMAC `secret` of HS256 tokens (default: $FANOUT_JWT_SECRET; the environment keeps it out of ps)")
	fs.StringVar(&o.jwtPublicKey, "jwt-public-key", "", "PEM `file` with the RSA (RS256) or ECDSA P-256 (ES256) public key that verifies tokens")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "if set, tokens must carry this iss")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "if set, tokens' aud must include this")
	fs.DurationVar(&o.jwtLeeway, "jwt-leeway", 0, "clock skew allowed when checking exp and nbf")
	fs.BoolVar(&o.jwtRequireExp, "jwt-require-exp", true, "refuse tokens without exp, which never expire (--jwt-require-exp=false lets them in)")
	fs.StringVar(&o.publishKey, "publish-key", "", "`key` that grants POST /publish on every topic, as Authorization: Bearer KEY (default: $FANOUT_PUBLISH_KEY)")
	fs.BoolVar(&o.anonPublish, "anonymous-publish", false, "with --no-auth and --publish-key, let WebSocket clients publish without the key")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated `origins` (scheme://host[:port], *.host for subdomains) allowed to open WebSockets; others get 403 (empty: any)")
	fs.Var(&o.page, "page", "serve the live page at / (connections, deliveries, topics and a console); default: on, but off with authentication unless --page is given, as its summary shows topic names to whoever reaches it")
	fs.StringVar(&o.nats, "nats", "", "comma-separated NATS `URLs` (JetStream on): run as a node of a cluster whose nodes share topics, seqs and history through NATS (empty: one node)")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials `file` (user JWT and nkey seed) for --nats")
	fs.StringVar(&o.natsStream, "nats-stream", "FANOUT", "JetStream stream `name` that holds the topics' messages, created or updated to --history-size and --history-age")
	fs.StringVar(&o.natsSubjectPrefix, "nats-subject-prefix", "fanout", "first token of the topics' NATS subjects; the stream holds PREFIX.>")
	fs.DurationVar(&o.frameTimeout, "frame-timeout", 15*time.Second, "a frame or fragmented message must be complete this long after its first byte, or the connection is closed with 1008 (0: never)")
}

// serveUsage is the usage text of "fanout serve", before its flags.
const serveUsage = `Usage: fanout serve [flags]

Runs the server. On one port:
  GET  /ws?topics=a,b&since=a:41   WebSocket subscriber (wire protocol v1, see README)
  POST /publish?topic=a            publish the JSON body; 202 {"seq":N}
  POST /publish                    publish a batch: [{"topic","data"},...] or NDJSON; 202 [{"topic","seq"},...]
  GET  /stats                      counters as JSON
  GET  /metrics                    the same, and Go and process metrics, for Prometheus
  GET  /healthz                    200 ok
  GET  /fanout.js                  the browser client (an ES module)
  GET  /                           the live page (see --page)
  GET  /echo                       WebSocket echo (unless --echo=false)

Flags:
`

func serve(args []string, stderr io.Writer) int {
	var o serveOptions
	fs := flag.NewFlagSet("fanout serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.flags(fs)
	if code := parseFlags(fs, serveUsage, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fanout serve: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "fanout serve:", err)
		return 2
	}
	o.publishKey = cmp.Or(o.publishKey, os.Getenv("FANOUT_PUBLISH_KEY"))
	verifier, err := o.verifier()
	if err != nil {
		fmt.Fprintln(stderr, "fanout serve:", err)
		return 2
	}
	origins, err := auth.ParseOrigins(o.allowedOrigins)
	if err != nil {
		fmt.Fprintln(stderr, "fanout serve: --allowed-origins:", err)
		return 2
	}
	policy, err := broadcast.ParsePolicy(o.slowConsumer)
	if err != nil {
		fmt.Fprintln(stderr, "fanout serve: --slow-consumer:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	if verifier == nil {
		log.Warn("running WITHOUT authentication (--no-auth): anyone may subscribe and publish on any topic")
		if o.publishKey == "" {
			log.Warn("POST /publish is open to anyone: set --publish-key to restrict it")
		}
	}
	if o.anonPublish && (verifier != nil || o.publishKey == "") {
		// Said, not refused: it asks for nothing that is not already so.
		log.Warn("--anonymous-publish has no effect: it applies with --no-auth and --publish-key only")
	}

	lc := net.ListenConfig{Control: wsconn.ListenControl(wsconn.Config{SendBufferBytes: int(o.sendBufferBytes)})}
	ln, err := lc.Listen(context.Background(), "tcp", o.listen)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	var broker *cluster.Broker
	if o.nats != "" {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		broker, err = cluster.Dial(dctx, cluster.Config{
			URLs:          strings.Split(o.nats, ","),
			Creds:         o.natsCreds,
			Stream:        o.natsStream,
			SubjectPrefix: o.natsSubjectPrefix,
			HistorySize:   o.historySize,
			HistoryAge:    o.historyAge,
			Logger:        log,
		})
		cancel()
		if err != nil {
			log.Error("start", "err", err)
			_ = ln.Close()
			return 1
		}
		defer broker.Close()
	}
	hub := broadcast.New(broadcast.Config{
		Shards:           o.shards,
		HistorySize:      o.historySize,
		HistoryAge:       o.historyAge,
		MaxSubscriptions: o.maxSubscriptions,
		MaxTopicBytes:    o.maxTopicBytes,
		MaxTopics:        o.maxTopics,
		MaxHistoryBytes:  historyBytes(o.maxHistoryBytes),
		MaxDataBytes:     int(o.maxPublishBytes),
		SlowConsumer:     policy,
		Auth:             verifier,
		PublishKey:       o.publishKey,
		AnonymousPublish: o.anonPublish,
		MessageRate:      o.messageRate,
		ByteRate:         float64(o.byteRate),
		MessageBurst:     o.messageBurst,
		CompressMinBytes: compressMinBytes(o.compression, o.compressMin),
		Broker:           hubBroker(broker),
		Logger:           log,
	})
	var srv *wsconn.Server
	cfg, live := o.config(log, hub, origins, verifier != nil, func() *wsconn.Server { return srv })
	srv, err = wsconn.NewServer(cfg)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if live != nil {
		go live.Run(ctx)
	}
	if o.returnMemory {
		go releaseAfterStorms(ctx, time.Second, srv.Stats, freeOSMemory, log)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("fanout listening", "addr", ln.Addr().String(), "auth", verifier != nil, "origins", origins.String(),
		"echo", o.echo, "page", live != nil, "workers", srv.Config().Workers, "shards", hub.Config().Shards)

	select {
	case err := <-errc:
		log.Error("serve", "err", err)
		_ = srv.Close()
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down", "connections", srv.Connections(), "timeout", o.shutdown)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdown)
	defer cancel()
	// The hub first: every message accepted so far is queued to its
	// subscribers before they are sent close 1001 behind it.
	hub.Close()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown timed out; remaining connections were dropped", "err", err)
	}
	log.Info("stopped")
	return 0
}

// hubBroker returns b as the hub's broker: nil, not a nil *cluster.Broker,
// for one node.
func hubBroker(b *cluster.Broker) broadcast.Broker {
	if b == nil {
		return nil
	}
	return b
}

// verifier returns the token verifier the auth flags configure, or nil with
// --no-auth. Running without either is an error: an open server must be
// asked for.
func (o *serveOptions) verifier() (*auth.Verifier, error) {
	secret := cmp.Or(o.jwtSecret, os.Getenv("FANOUT_JWT_SECRET"))
	switch {
	case o.noAuth && (secret != "" || o.jwtPublicKey != ""):
		return nil, errors.New("--no-auth and --jwt-secret/--jwt-public-key exclude each other")
	case o.noAuth:
		return nil, nil
	case secret == "" && o.jwtPublicKey == "":
		return nil, errors.New("no authentication configured: set --jwt-secret or --jwt-public-key, or pass --no-auth to run open to all (insecure)")
	case secret != "" && o.jwtPublicKey != "":
		return nil, errors.New("set one of --jwt-secret and --jwt-public-key, not both")
	}
	cfg := auth.Config{Secret: []byte(secret), Issuer: o.jwtIssuer, Audience: o.jwtAudience, Leeway: o.jwtLeeway, AllowNoExp: !o.jwtRequireExp}
	if o.jwtPublicKey != "" {
		pem, err := os.ReadFile(o.jwtPublicKey)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %w", err)
		}
		if cfg.PublicKey, err = auth.LoadPublicKey(pem); err != nil {
			return nil, fmt.Errorf("--jwt-public-key %s: %w", o.jwtPublicKey, err)
		}
	}
	v, err := auth.NewVerifier(cfg)
	switch {
	case errors.Is(err, auth.ErrShortSecret):
		return nil, fmt.Errorf("--jwt-secret (or $FANOUT_JWT_SECRET) is %d bytes: an HS256 secret must be at least %d", len(secret), auth.MinSecretBytes)
	case err != nil:
		return nil, fmt.Errorf("authentication: %w", err)
	}
	return v, nil
}

// config builds the server configuration from the flags, and the live page
// if it is on (its sampler is to be run). srv returns the server once it
// exists, for /stats.
func (o *serveOptions) config(log *slog.Logger, hub *broadcast.Hub, origins *auth.Origins, authOn bool, srv func() *wsconn.Server) (wsconn.Config, *page.Page) {
	mux := http.NewServeMux()
	var live *page.Page
	if o.page.enabled(authOn) {
		live = page.New(page.Config{
			Read: func() page.Sample {
				s := srv()
				return page.Sample{Connections: s.Stats().WebSockets, Deliveries: hub.Stats().Deliveries, QueuedBytes: s.QueuedBytes()}
			},
			Topics: hub.TopTopics,
			Auth:   authOn,
		})
		mux.Handle("GET /{$}", live)
		mux.Handle("GET /page/", live)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("/publish", hub.PublishHandler())
	mux.Handle("GET /metrics", metricsHandler(srv, hub))
	mux.Handle("GET /fanout.js", js.Handler())
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		s := srv()
		st := stats{Server: s.Stats(), Hub: hub.Stats(), QueuedBytes: s.QueuedBytes(), Process: readProcessStats()}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	echo := o.echo
	return wsconn.Config{
		Workers:               o.workers,
		MaxMessageBytes:       int64(o.maxMessageBytes),
		MaxBodyBytes:          int64(o.maxPublishBytes),
		MaxQueueBytes:         int(o.maxQueueBytes),
		SendBufferBytes:       int(o.sendBufferBytes),
		MaxHeaderBytes:        int(o.maxHeaderBytes),
		MaxHandshakes:         o.maxHandshakes,
		MaxHTTPHandlers:       o.maxHTTPHandlers,
		HTTPKeepAliveRequests: o.httpKeepAlive,
		HTTPIdleTimeout:       o.httpIdle,
		DisableCompression:    !o.compression,
		MaxConnections:        o.maxConns,
		MaxConnectionsPerIP:   o.maxConnsPerIP,
		HandshakeTimeout:      o.handshake,
		PingInterval:          o.pingInterval,
		IdleTimeout:           o.idleTimeout,
		FrameTimeout:          o.frameTimeout,
		Upgrade: func(r *wsconn.Request) (wsconn.Handler, error) {
			if !origins.Allowed(r.Origin) {
				return nil, wsconn.Reject(http.StatusForbidden, "origin not allowed")
			}
			switch {
			case r.Path == "/ws":
				return hub.Upgrade(r)
			case echo && r.Path == "/echo":
				return hub.Echo(r)
			}
			return nil, wsconn.RejectRedacted(http.StatusNotFound, "no WebSocket endpoint at "+r.Path,
				"no WebSocket endpoint at this path", nil)
		},
		HTTP:   mux,
		Logger: log,
	}, live
}

// historyBytes maps --max-history-bytes to broadcast.Config.MaxHistoryBytes,
// where 0 means the default and a negative value no bound.
func historyBytes(b byteSize) int64 {
	if b == 0 {
		return -1
	}
	return int64(b)
}

// parseFlags parses args with fs, whose usage is usage and then the flags.
// It returns -1 to go on, or the exit status: 0 for -help, which prints the
// usage, 2 for a bad flag, which prints one line naming it (the flag
// package would print the whole usage after it).
func parseFlags(fs *flag.FlagSet, usage string, args []string) int {
	out := fs.Output()
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return 0
	}
	fmt.Fprintf(out, "%s: %v (see --help)\n", fs.Name(), err)
	return 2
}

// compressMinBytes is the hub's CompressMinBytes: negative, never, with
// --compression=false.
func compressMinBytes(on bool, min byteSize) int {
	if !on {
		return -1
	}
	return int(min) // at least 1: validate says so
}
