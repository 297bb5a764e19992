package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// newHTTPClient returns the client that publishes and reads stats. It keeps
// as many connections alive as --publishers' default has in flight, and
// drops an idle one before fanout's --http-idle-timeout (30 s) would: a
// publish on a connection the server has just closed would fail.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     20 * time.Second,
		DisableCompression:  true,
	}}
}

// publishReply is the body of a publish response.
type publishReply struct {
	Seq uint64 `json:"seq"`
}

// publish posts data to the topic and returns its seq. With several
// servers, publishes go to each in turn.
func (r *runner) publish(ctx context.Context, data []byte) (uint64, error) {
	t := &r.t
	if len(r.ts) > 1 {
		t = &r.ts[(r.pubs.Add(1)-1)%uint64(len(r.ts))]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.publishURL, bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("bench: publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.publishAuth != "" {
		req.Header.Set("Authorization", r.publishAuth)
	}
	resp, err := r.httpc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: publish: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("bench: publish: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("bench: publish to %s: %s: %s", t.publishURL, resp.Status, truncate(body, 200))
	}
	var rep publishReply
	if err := json.Unmarshal(body, &rep); err != nil {
		return 0, fmt.Errorf("bench: publish: response %q: %w", truncate(body, 200), err)
	}
	return rep.Seq, nil
}
