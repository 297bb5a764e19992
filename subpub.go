package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fanout/fanout/client"
)

// jsonLines writes one JSON value a line, flushed at once, for the events
// and messages of "fanout sub", which come from the client's read loop.
type jsonLines struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (j *jsonLines) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_, _ = j.w.Write(append(b, '\n'))
	_ = j.w.Flush()
}

// subLine is a line of "fanout sub": a message (no "event" key, as a
// message frame has no "type"), or an event.
type subLine struct {
	Event     string          `json:"event,omitempty"`
	Topic     string          `json:"topic,omitempty"`
	Seq       *uint64         `json:"seq,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Epoch     string          `json:"epoch,omitempty"`
	Recovered *bool           `json:"recovered,omitempty"`
	From      *uint64         `json:"from,omitempty"`
	To        *uint64         `json:"to,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	PrevEpoch string          `json:"prev_epoch,omitempty"`
	PrevSeq   *uint64         `json:"prev_seq,omitempty"`
	Code      any             `json:"code,omitempty"` // a close code, or a protocol error code
	Attempt   int             `json:"attempt,omitempty"`
	Error     string          `json:"error,omitempty"`
}

func eventLine(e client.Event) subLine {
	l := subLine{Event: e.Kind.String(), Topic: e.Topic}
	if e.Err != nil {
		l.Error = e.Err.Error()
	}
	switch e.Kind {
	case client.Connected:
		l.Attempt = e.Attempt
	case client.Disconnected:
		if e.Code != 0 {
			l.Code = e.Code
		}
	case client.Subscribed:
		l.Seq, l.Epoch, l.Recovered = &e.Seq, e.Epoch, &e.Recovered
	case client.Lost:
		l.From, l.To, l.Epoch, l.Reason = &e.From, &e.To, e.Epoch, e.Reason
		if e.Reason == "new_epoch" {
			l.PrevEpoch, l.PrevSeq = e.PrevEpoch, &e.PrevSeq
		}
	case client.Refused:
		l.Code = e.ErrorCode
	}
	return l
}

// subUsage is the usage text of "fanout sub", before its flags.
const subUsage = `Usage: fanout sub [flags] TOPIC...

Subscribes to the topics and prints one JSON line per message, as the server
sends it ({"topic","seq","data"}), and one per event: {"event":"connected"},
{"event":"disconnected","code":N}, {"event":"subscribed","recovered":...},
{"event":"lost","from":N,"to":M,"reason":...} and {"event":"refused"}.
It reconnects and recovers on its own (package client): every message is
printed once, in order, or its loss is printed. SIGINT or SIGTERM ends it.

Flags:
`

// sub runs "fanout sub": it subscribes to the topics and prints each
// message, and each connection, recovery and loss, as a JSON line, until
// SIGINT or SIGTERM.
func sub(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fanout sub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "ws://127.0.0.1:8080", "the server's `URL` (ws:// or wss://; the path defaults to /ws)")
	token := fs.String("token", "", "`token` to connect with (default: $FANOUT_TOKEN)")
	if code := parseFlags(fs, subUsage, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "fanout sub: name at least one topic")
		return 2
	}
	for _, topic := range fs.Args() {
		if !client.ValidTopic(topic) {
			fmt.Fprintf(stderr, "fanout sub: %q is not a topic name: ASCII letters, digits and -_.:@/\n", topic)
			return 2
		}
	}
	out := &jsonLines{w: bufio.NewWriter(stdout)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := client.Dial(ctx, *url, &client.Options{
		StaticToken: cmp.Or(*token, os.Getenv("FANOUT_TOKEN")),
		OnEvent:     func(e client.Event) { out.write(eventLine(e)) },
	})
	if err != nil {
		if ctx.Err() != nil {
			return 0 // interrupted before the first connection
		}
		fmt.Fprintln(stderr, "fanout sub:", err)
		return 1
	}
	for _, topic := range fs.Args() {
		err := c.Subscribe(topic, func(m client.Message) {
			out.write(subLine{Topic: m.Topic, Seq: &m.Seq, Data: m.Data})
		})
		if err != nil {
			_ = c.Close()
			fmt.Fprintln(stderr, "fanout sub:", err)
			return 2
		}
	}
	select {
	case <-ctx.Done():
		_ = c.Close()
		return 0
	case <-c.Done():
		fmt.Fprintln(stderr, "fanout sub:", c.Err())
		return 1
	}
}

// pubUsage is the usage text of "fanout pub", before its flags.
const pubUsage = `Usage: fanout pub [flags] TOPIC [DATA | -]

Publishes DATA, a JSON value, to TOPIC; without DATA, or with -, publishes
each line of the standard input (empty lines skipped). Prints
{"topic","seq"} for each message published; a line the server refuses is
reported on stderr with its number, the others go on, and the exit status
is 1.

Flags:
`

// pub runs "fanout pub": it publishes DATA, or each line of its standard
// input, to the topic, and prints each one's seq.
func pub(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fanout pub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "the server's `URL` (http:// or https://; the path defaults to /publish)")
	token := fs.String("token", "", "`token` (or publish key) to publish with (default: $FANOUT_TOKEN)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long one publish may take")
	if code := parseFlags(fs, pubUsage, args); code >= 0 {
		return code
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 2
	}
	p, err := client.NewPublisher(*url, &client.Options{StaticToken: cmp.Or(*token, os.Getenv("FANOUT_TOKEN"))})
	if err != nil {
		fmt.Fprintln(stderr, "fanout pub:", err)
		return 2
	}
	topic := fs.Arg(0)
	out := &jsonLines{w: bufio.NewWriter(stdout)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	publish := func(data string) error {
		pctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		seq, err := p.Publish(pctx, topic, []byte(data))
		if err != nil {
			return err
		}
		out.write(struct {
			Topic string `json:"topic"`
			Seq   uint64 `json:"seq"`
		}{topic, seq})
		return nil
	}
	if fs.NArg() == 2 && fs.Arg(1) != "-" {
		if err := publish(fs.Arg(1)); err != nil {
			fmt.Fprintln(stderr, "fanout pub:", err)
			return 1
		}
		return 0
	}
	return publishLines(ctx, p, topic, stdin, out, stderr, *timeout)
}

// A batch of input lines is at most batchLines and batchBytes, well under
// the server's default body limit (--max-publish-bytes, 64 KiB).
const (
	batchLines = 500
	batchBytes = 32 << 10
)

// line is a line of "fanout pub"'s input and its number.
type line struct {
	n    int
	text string
}

// publishLines publishes each line of in to topic. Lines that are already
// there go together in one batch (POST /publish with a JSON array); a line
// that comes alone goes alone, at once: batching adds no wait. It returns
// the exit status: 1 if a line was refused or the input failed.
func publishLines(ctx context.Context, p *client.Publisher, topic string, in io.Reader, out *jsonLines, stderr io.Writer, timeout time.Duration) int {
	lines := make(chan line, batchLines)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for n := 1; sc.Scan(); n++ {
			if text := strings.TrimSpace(sc.Text()); text != "" {
				lines <- line{n, text}
			}
		}
		readErr <- sc.Err()
	}()
	status := 0
	fail := func(n int, err error) {
		fmt.Fprintf(stderr, "fanout pub: line %d: %v\n", n, err)
		status = 1
	}
	published := func(seq uint64) {
		out.write(struct {
			Topic string `json:"topic"`
			Seq   uint64 `json:"seq"`
		}{topic, seq})
	}
	single := func(l line) {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		seq, err := p.Publish(pctx, topic, []byte(l.text))
		if err != nil {
			fail(l.n, err)
			return
		}
		published(seq)
	}
	for {
		var first line
		select {
		case l, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					fmt.Fprintln(stderr, "fanout pub: read input:", err)
					return 1
				}
				return status
			}
			first = l
		case <-ctx.Done():
			return 1 // interrupted; the lines not yet read are not published
		}
		// The lines already read join the first, up to a batch.
		batch, size := []line{first}, len(first.text)
	more:
		for len(batch) < batchLines && size < batchBytes {
			select {
			case l, ok := <-lines:
				if !ok {
					break more
				}
				batch = append(batch, l)
				size += len(l.text)
			default:
				break more
			}
		}
		var items []client.Item
		var sent []line
		for _, l := range batch {
			if !json.Valid([]byte(l.text)) {
				fail(l.n, errors.New("not valid JSON"))
				continue
			}
			items = append(items, client.Item{Topic: topic, Data: json.RawMessage(l.text)})
			sent = append(sent, l)
		}
		switch len(sent) {
		case 0:
			continue
		case 1:
			single(sent[0])
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		results, err := p.PublishBatch(pctx, items)
		cancel()
		var pe *client.PublishError
		switch {
		case errors.As(err, &pe) && pe.Status == http.StatusRequestEntityTooLarge:
			for _, l := range sent { // over the server's body limit: one by one
				single(l)
			}
		case err != nil:
			for _, l := range sent {
				fail(l.n, err)
			}
		default:
			for i, r := range results {
				if r.Err != nil {
					fail(sent[i].n, r.Err)
					continue
				}
				published(r.Seq)
			}
		}
	}
}

// parseFlags parses args with fs, whose usage is usage and then the flags.
// It returns -1 to go on, or the exit status: 0 for -help, 2 for a bad
// flag (fs has said why).
func parseFlags(fs *flag.FlagSet, usage string, args []string) int {
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	return -1
}
