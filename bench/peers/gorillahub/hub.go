package main

import (
	"sync/atomic"

	"github.com/fanout/fanout/bench/peers/internal/contract"
)

// publication is a message for a topic on its way to the hub. The hub
// answers with the message's seq on the seq channel.
type publication struct {
	topic string
	data  []byte
	seq   chan uint64
}

// Hub maintains the set of active clients and the topics they subscribe to,
// and broadcasts messages to a topic's clients. Only the run goroutine touches
// its maps.
type Hub struct {
	// Registered clients.
	clients map[*Client]bool

	// The clients of each topic.
	topics map[string]map[*Client]bool

	// The last seq of each topic.
	seqs map[string]uint64

	// Inbound messages from POST /publish.
	broadcast chan publication

	// Register requests from the clients.
	register chan *Client

	// Unregister requests from clients.
	unregister chan *Client

	// Closed to stop the hub, which then closes every client.
	stop chan struct{}
	done chan struct{}

	// The number of registered clients, for /stats.
	connections atomic.Int64
}

func newHub() *Hub {
	return &Hub{
		clients:    make(map[*Client]bool),
		topics:     make(map[string]map[*Client]bool),
		seqs:       make(map[string]uint64),
		broadcast:  make(chan publication),
		register:   make(chan *Client),
		unregister: make(chan *Client),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
}

func (h *Hub) run() {
	defer close(h.done)
	for {
		select {
		case client := <-h.register:
			h.clients[client] = true
			for _, t := range client.topics {
				subs := h.topics[t]
				if subs == nil {
					subs = make(map[*Client]bool)
					h.topics[t] = subs
				}
				subs[client] = true
			}
			h.connections.Add(1)
		case client := <-h.unregister:
			if _, ok := h.clients[client]; ok {
				h.remove(client)
			}
		case p := <-h.broadcast:
			seq := h.seqs[p.topic] + 1
			h.seqs[p.topic] = seq
			// The publisher has its answer before the fan-out: it
			// waits for the hub to take the message, as in the chat
			// example, not for every subscriber to have it queued.
			p.seq <- seq
			message := contract.Envelope(p.topic, seq, p.data)
			for client := range h.topics[p.topic] {
				select {
				case client.send <- message:
				default:
					h.remove(client)
				}
			}
		case <-h.stop:
			for client := range h.clients {
				h.remove(client)
			}
			return
		}
	}
}

// remove forgets client and closes its send channel, on which its writePump
// sends a close message and closes the connection.
func (h *Hub) remove(client *Client) {
	for _, t := range client.topics {
		subs := h.topics[t]
		delete(subs, client)
		if len(subs) == 0 {
			delete(h.topics, t)
		}
	}
	delete(h.clients, client)
	close(client.send)
	h.connections.Add(-1)
}

// publish is the contract.PublishFunc: the hub goroutine numbers and sends
// the message.
func (h *Hub) publish(topic string, data []byte) uint64 {
	p := publication{topic: topic, data: data, seq: make(chan uint64, 1)}
	select {
	case h.broadcast <- p:
		return <-p.seq
	case <-h.done:
		return 0 // shutting down; the HTTP server has stopped taking requests
	}
}

// shutdown stops the hub and closes every client.
func (h *Hub) shutdown() {
	close(h.stop)
	<-h.done
}
