package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Publisher publishes over HTTP, POST /publish, with no WebSocket. It is
// safe for concurrent use; its HTTP client keeps connections alive where
// the server allows. A publish that fails for the network (a connection
// reset or closed before the answer) is not retried: it may or may not have
// been published, and the caller, who knows whether a duplicate is worse
// than a loss, decides.
type Publisher struct {
	url   *url.URL
	token func(ctx context.Context) (string, error)
	http  *http.Client
}

// NewPublisher returns a publisher to rawURL: http(s)://host:port, or with
// a path (default /publish). Of opts it uses Token or StaticToken, whose
// token it sends as a bearer token (a publish key works too), and
// HTTPClient.
func NewPublisher(rawURL string, opts *Options) (*Publisher, error) {
	o := opts.withDefaults()
	u, err := parseURL(rawURL, false, "/publish")
	if err != nil {
		return nil, err
	}
	token := o.Token
	if token == nil && o.StaticToken != "" {
		static := o.StaticToken
		token = func(context.Context) (string, error) { return static, nil }
	}
	return &Publisher{url: u, token: token, http: o.HTTPClient}, nil
}

// PublishError is a publish that the server refused.
type PublishError struct {
	Status int
	Body   string
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("client: publish refused with %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// Publish publishes data, a JSON value, to topic and returns its seq.
func (p *Publisher) Publish(ctx context.Context, topic string, data []byte) (uint64, error) {
	answer, err := p.post(ctx, &topic, data)
	if err != nil {
		return 0, err
	}
	var r struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(answer, &r); err != nil || r.Seq == nil {
		return 0, fmt.Errorf("client: publish: answer %q has no seq", answer)
	}
	return *r.Seq, nil
}

// post posts body to the publish URL, with ?topic= set to *topic, or with
// no topic if topic is nil (a batch), and returns the body of a 202.
func (p *Publisher) post(ctx context.Context, topic *string, body []byte) ([]byte, error) {
	u := *p.url
	q := u.Query()
	if topic != nil {
		q.Set("topic", *topic)
	} else {
		q.Del("topic")
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("client: publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if p.token != nil {
		token, err := p.token(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: publish: token: %w", err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: publish: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("client: publish: read response: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return nil, &PublishError{Status: resp.StatusCode, Body: strings.TrimSpace(string(answer))}
	}
	return answer, nil
}

// Item is one message of a batch publish.
type Item struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

// Result answers one Item of a batch: its seq, or Err (an *ItemError)
// when the server refused that item alone.
type Result struct {
	Topic string
	Seq   uint64
	Err   error
}

// ItemError is an item of a batch that the server refused, with the
// error code of the protocol (invalid_topic, invalid_data, too_large,
// forbidden, too_many_topics, unavailable).
type ItemError struct {
	Code    string
	Message string
}

func (e *ItemError) Error() string { return "client: " + e.Code + ": " + e.Message }

// PublishBatch publishes items in order with one POST /publish, and
// returns a result for each, in the same order. Each item's Data goes as
// it is, and must be one JSON value: an item whose data is not makes the
// whole batch invalid (a *PublishError, 400). An error refers to the
// request as a whole (a *PublishError for its status, such as 413 when the
// batch is over the server's body limit, --max-publish-bytes): then
// nothing was published.
func (p *Publisher) PublishBatch(ctx context.Context, items []Item) ([]Result, error) {
	// Built by hand, so that each item's data goes as it is: json.Marshal
	// would compact it and escape <, > and &.
	var body bytes.Buffer
	body.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			body.WriteByte(',')
		}
		topic, err := json.Marshal(it.Topic)
		if err != nil {
			return nil, fmt.Errorf("client: publish batch: %w", err)
		}
		body.WriteString(`{"topic":`)
		body.Write(topic)
		if it.Data != nil { // no data: the server answers invalid_data
			body.WriteString(`,"data":`)
			body.Write(it.Data)
		}
		body.WriteByte('}')
	}
	body.WriteByte(']')
	answer, err := p.post(ctx, nil, body.Bytes())
	if err != nil {
		return nil, err
	}
	var rs []struct {
		Topic   string  `json:"topic"`
		Seq     *uint64 `json:"seq"`
		Error   string  `json:"error"`
		Message string  `json:"message"`
	}
	if err := json.Unmarshal(answer, &rs); err != nil || len(rs) != len(items) {
		return nil, fmt.Errorf("client: publish batch: answer %q is not %d results", answer, len(items))
	}
	out := make([]Result, len(rs))
	for i, r := range rs {
		out[i].Topic = items[i].Topic
		switch {
		case r.Seq != nil:
			out[i].Seq = *r.Seq
		default:
			out[i].Err = &ItemError{Code: r.Error, Message: r.Message}
		}
	}
	return out, nil
}
