package wsconn_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fanout/fanout/wsconn"
)

// TestHalfCloseGetsWholeResponse: a client that sends its request and
// half-closes (as nc -N does), then reads, gets all of a response larger
// than the sockets hold: the server took the FIN for the end and released
// the connection with most of the response unsent.
func TestHalfCloseGetsWholeResponse(t *testing.T) {
	const size = 8 << 20
	body := bytes.Repeat([]byte("x"), size)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })
	_, addr := startServer(t, wsconn.Config{HTTP: mux})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.(*net.TCPConn).CloseWrite()
	time.Sleep(200 * time.Millisecond) // let the socket buffers fill
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	t.Logf("read %d bytes, err %v", len(got), err)
	if err != nil || len(got) < size {
		t.Fatalf("response truncated: %d of more than %d bytes (%v)", len(got), size, err)
	}
}
