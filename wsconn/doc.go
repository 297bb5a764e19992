// Package wsconn serves WebSocket connections with no goroutine per
// connection.
//
// A Server accepts raw sockets on a reactor (package poller) and hands ready
// connections to a bounded worker pool. Each connection is one fd and a
// small Conn:
//
//   - Past a limit (connections held, connections from one address,
//     handshakes in flight) a new connection gets 503 at accept and is
//     closed, before it costs more than the answer.
//   - The upgrade is read incrementally, within an absolute deadline and a
//     size limit, and run through the gobwas/ws Upgrader's hooks. No net/http
//     buffers stay behind. A request that is not an upgrade is served as
//     plain HTTP on the same port.
//   - The frame reader (Reader) is incremental. Between reads a connection
//     keeps only the bytes of an unfinished frame header and a little state,
//     so a slow or hostile client never holds a worker. It enforces RFC 6455:
//     masking, reserved bits and opcodes, control-frame rules, fragmentation,
//     UTF-8 validated as it streams in, close codes and the message size
//     limit.
//   - Writes go through a per-connection queue of references to shared frame
//     bytes, bounded in bytes. One writer at a time flushes it with writev,
//     without blocking; on EAGAIN it waits for writability. A connection
//     whose queue is full handles no more of its peer's messages (the rest
//     of a read is set aside) and reads nothing until it drains. A replay
//     (SendReplay) enters the queue a chunk at a time as it drains, and
//     the connection pauses the same way until the replay is all queued.
//   - A sweep on a coarse tick enforces the handshake, frame and close
//     deadlines, all absolute, pings quiet connections and closes idle ones.
//     There is no timer per connection.
//
// The hot paths (frame parsing, queueing, flushing) allocate nothing.
//
// # Who waits for whom
//
// The server cannot deadlock because its wait-for graph has no cycle. Its
// edges, "A waits for B":
//
//   - The poller waits for room in the pool's queue (Pool.Submit): when the
//     workers fall behind, the reactor stops taking events. That is its
//     backpressure, and the poller holds no lock while it waits.
//   - A worker, running a turn, waits for its connection's Conn.mu and for
//     whatever its Handler waits for. The broadcast hub's handlers wait for
//     a topic's lock and for room in a shard's inbox; a shard waits only for
//     Conn.mu.
//   - Shards, the sweep and HTTP handler goroutines wait for Conn.mu, and
//     for nothing else while they hold it: they never block on the pool. A
//     turn they need (a write failed, a deadline passed) goes through
//     Server.handoff, which never blocks; its own goroutine, holding no
//     lock, waits for the pool on their behalf.
//   - Conn.mu is held only for work that does not block: non-blocking
//     system calls, Poller.Arm and Poller.AddHandler, Server.handoff. No Handler method nor
//     Expirer runs under it.
//   - Pauses are not waits. A turn that finds its connection paused (a
//     full queue, a Hold) ends; whoever lifts the pause (a flush, a
//     SendReplay) arms the fd or schedules a turn for input set aside.
//
// Locks are taken in this order, never the reverse: a registry shard's
// lock, then Conn.mu, then the poller's own. Conn.sched is not a lock but a
// claim: whoever moves it from idle queues the one turn, so a connection is
// in the pool's queue or the handoff list at most once.
package wsconn
