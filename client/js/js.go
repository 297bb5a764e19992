// Package js serves fanout.js, the browser client of fanout's wire protocol
// v1: one dependency-free ES module that reconnects, recovers and reports
// every loss as the Go package github.com/fanout/fanout/client does.
package js

import (
	_ "embed"
	"net/http"
)

//go:embed fanout.js
var source []byte

// Handler serves the module, for GET /fanout.js.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(source)
	})
}
