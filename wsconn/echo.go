package wsconn

import "github.com/gobwas/ws"

// Echo is a Handler that sends every message back as it was received: text
// as text, binary as binary. A fragmented message is echoed whole, as one
// frame. Conformance suites and the bench run against it.
type Echo struct{}

// OnOpen does nothing.
func (Echo) OnOpen(*Conn) {}

// OnMessage sends payload back to c.
func (Echo) OnMessage(c *Conn, op ws.OpCode, payload []byte) {
	_ = c.Send(NewFrame(op, payload), Reply) // ErrClosed: the connection is going anyway
}

// OnClose does nothing.
func (Echo) OnClose(*Conn) {}
