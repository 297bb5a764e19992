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

// jsonLines writes one JSON value a line, each in one Write, for the
// output of "fanout sub" and "fanout pub". Data is compacted onto its line
// but not HTML-escaped, so that a message reads as published.
type jsonLines struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newJSONLines(w io.Writer) *jsonLines {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &jsonLines{enc: enc}
}

func (j *jsonLines) write(v any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(v)
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
	out := newJSONLines(stdout)
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pb := &publisher{ctx: ctx, p: p, topic: fs.Arg(0), out: newJSONLines(stdout), stderr: stderr, timeout: *timeout}
	if fs.NArg() == 2 && fs.Arg(1) != "-" {
		pb.one(0, fs.Arg(1))
	} else {
		pb.lines(stdin)
	}
	return pb.status
}

// publisher publishes to a topic for "fanout pub", prints the seq of each
// message published and reports each refused.
type publisher struct {
	ctx     context.Context // ends on SIGINT or SIGTERM
	p       *client.Publisher
	topic   string
	out     *jsonLines
	stderr  io.Writer
	timeout time.Duration // of one request
	status  int           // the exit status: 1 once something failed
}

func (pb *publisher) published(seq uint64) {
	pb.out.write(struct {
		Topic string `json:"topic"`
		Seq   uint64 `json:"seq"`
	}{pb.topic, seq})
}

// fail reports err, of the input line n (0: the DATA argument).
func (pb *publisher) fail(n int, err error) {
	if n > 0 {
		fmt.Fprintf(pb.stderr, "fanout pub: line %d: %v\n", n, err)
	} else {
		fmt.Fprintln(pb.stderr, "fanout pub:", err)
	}
	pb.status = 1
}

// one publishes data, the input line n, alone.
func (pb *publisher) one(n int, data string) {
	ctx, cancel := context.WithTimeout(pb.ctx, pb.timeout)
	defer cancel()
	seq, err := pb.p.Publish(ctx, pb.topic, []byte(data))
	if err != nil {
		pb.fail(n, err)
		return
	}
	pb.published(seq)
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

// lines publishes each line of in. Lines that are already there go
// together in one batch (POST /publish with a JSON array); a line that
// comes alone goes alone, at once: batching adds no wait.
func (pb *publisher) lines(in io.Reader) {
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
	// An item's bytes in a batch's body: {"topic":T,"data":L}, and a comma.
	cost := func(l line) int { return len(l.text) + len(pb.topic) + 21 }
	var held *line // read, and left for the next batch, which it would take past batchBytes
	for {
		var first line
		if held != nil {
			first, held = *held, nil
		} else {
			select {
			case l, ok := <-lines:
				if !ok {
					if err := <-readErr; err != nil {
						fmt.Fprintln(pb.stderr, "fanout pub: read input:", err)
						pb.status = 1
					}
					return
				}
				first = l
			case <-pb.ctx.Done():
				pb.status = 1 // interrupted; the lines not yet read are not published
				return
			}
		}
		// The lines already read join the first, up to a batch.
		batch, size := []line{first}, 2+cost(first)
	more:
		for len(batch) < batchLines {
			select {
			case l, ok := <-lines:
				if !ok {
					break more
				}
				if size+cost(l) > batchBytes {
					held = &l
					break more
				}
				batch = append(batch, l)
				size += cost(l)
			default:
				break more
			}
		}
		var items []client.Item
		var sent []line
		for _, l := range batch {
			if !json.Valid([]byte(l.text)) {
				pb.fail(l.n, errors.New("not valid JSON"))
				continue
			}
			items = append(items, client.Item{Topic: pb.topic, Data: json.RawMessage(l.text)})
			sent = append(sent, l)
		}
		switch len(sent) {
		case 0:
			continue
		case 1:
			pb.one(sent[0].n, sent[0].text)
			continue
		}
		ctx, cancel := context.WithTimeout(pb.ctx, pb.timeout)
		results, err := pb.p.PublishBatch(ctx, items)
		cancel()
		var pe *client.PublishError
		switch {
		case errors.As(err, &pe) && pe.Status == http.StatusRequestEntityTooLarge:
			for _, l := range sent { // over the server's body limit: one by one
				pb.one(l.n, l.text)
			}
		case err != nil:
			for _, l := range sent {
				pb.fail(l.n, err)
			}
		default:
			for i, r := range results {
				if r.Err != nil {
					pb.fail(sent[i].n, r.Err)
					continue
				}
				pb.published(r.Seq)
			}
		}
	}
}
