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
// the server allows.
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
	u := *p.url
	q := u.Query()
	q.Set("topic", topic)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("client: publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if p.token != nil {
		token, err := p.token(ctx)
		if err != nil {
			return 0, fmt.Errorf("client: publish: token: %w", err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("client: publish: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("client: publish: read response: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return 0, &PublishError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	var r struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Seq == nil {
		return 0, fmt.Errorf("client: publish: answer %q has no seq", body)
	}
	return *r.Seq, nil
}
