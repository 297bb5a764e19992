package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// metrics serves GET /metrics in the Prometheus text format. Its collector
// reads the server's and the hub's atomic counters when scraped: counting
// costs nothing per message or delivery, no lock and no allocation. The
// registry is the handler's own, not the default one.
func metricsHandler(srv func() *wsconn.Server, hub *broadcast.Hub) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{srv: srv, hub: hub},
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("fanout_"+name, help, labels, nil)
}

var (
	descConnections   = desc("connections", "Connections held: WebSocket, handshaking or plain HTTP.")
	descWebSockets    = desc("websockets", "Upgraded WebSocket connections.")
	descHandshaking   = desc("handshakes_in_flight", "Connections accepted and not yet upgraded nor answered.")
	descHandshakes    = desc("handshakes_total", "Handshakes by outcome: 101 (upgraded), the status of a refusal (503 includes connections refused at accept, for a limit or while shutting down), aborted (the peer left or the handshake timed out).", "outcome")
	descMessagesIn    = desc("messages_in_total", "Data messages received from clients, /ws and /echo.")
	descInflated      = desc("messages_inflated_total", "Of the data messages received, those the client compressed (permessage-deflate).")
	descCompressedUps = desc("compressed_upgrades_total", "WebSocket upgrades that negotiated permessage-deflate.")
	descCompClients   = desc("compressed_clients", "Subscribers whose connection takes compressed frames.")
	descCompMessages  = desc("messages_compressed_total", "Messages compressed for those subscribers, once each.")
	descCompDelivers  = desc("compressed_deliveries_total", "Of the deliveries, those that went compressed.")
	descCompSaved     = desc("compressed_bytes_saved_total", "Bytes the compressed deliveries saved against the plain frames.")
	descBytesIn       = desc("bytes_in_total", "Bytes read from clients.")
	descBytesOut      = desc("bytes_out_total", "Bytes written to clients.")
	descProtocolErrs  = desc("protocol_errors_total", "Connections failed for breaking RFC 6455 or a limit.")
	descCloses        = desc("close_codes_sent_total", "Close frames sent, by close code.", "code")
	descPublishes     = desc("publishes_total", "Messages published, over HTTP or WebSocket.")
	descDeliveries    = desc("deliveries_total", "Messages queued to subscribers.")
	descReplayed      = desc("replayed_total", "Messages replayed from history to recovering subscribers.")
	descDrops         = desc("drops_total", "Messages skipped for subscribers whose queue was full (--slow-consumer=drop).")
	descSlowCloses    = desc("slow_consumer_disconnects_total", "Subscribers closed (4008) because their queue was full (--slow-consumer=disconnect).")
	descRateLimited   = desc("rate_limited_total", "Client messages refused for the message or byte rate.")
	descQueuedBytes   = desc("queued_bytes", "Bytes queued to clients and not yet written.")
	descTopics        = desc("topics", "Topics held.")
	descTopicsRefused = desc("topics_refused_total", "Publishes and subscribes refused at --max-topics.")
	descSubs          = desc("subscriptions", "Subscriptions held.")
	descHistMsgs      = desc("history_messages", "Messages held in the history of all topics.")
	descHistBytes     = desc("history_bytes", "History held, as --max-history-bytes counts it.")
	descHistEvicted   = desc("history_evicted_total", "History messages dropped, oldest first, for --max-history-bytes.")
	descNATS          = desc("nats_connected", "In a cluster (--nats), 1 while NATS is connected and publishes can be stored, else 0.")
	descLatency       = desc("fanout_latency_seconds", "Time from a publish until the last shard with subscribers of its topic has queued it to all of them.")
)

// collector turns the counters into metrics at scrape time.
type collector struct {
	srv func() *wsconn.Server
	hub *broadcast.Hub
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descConnections, descWebSockets, descHandshaking, descHandshakes, descMessagesIn, descInflated, descCompressedUps, descCompClients, descCompMessages, descCompDelivers, descCompSaved, descBytesIn,
		descBytesOut, descProtocolErrs, descCloses, descPublishes, descDeliveries, descReplayed, descDrops,
		descSlowCloses, descRateLimited, descQueuedBytes, descTopics, descTopicsRefused, descSubs,
		descHistMsgs, descHistBytes, descHistEvicted, descNATS, descLatency,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv()
	st, hs := s.Stats(), c.hub.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnections, float64(st.Connections))
	gauge(descWebSockets, float64(st.WebSockets))
	gauge(descHandshaking, float64(st.Handshakes))
	counter(descHandshakes, st.Upgrades, "101")
	for status, n := range s.HandshakeStatuses() {
		if status == "503" {
			n += st.Refused
		}
		counter(descHandshakes, n, status)
	}
	counter(descHandshakes, st.HandshakeAborts, "aborted")
	counter(descMessagesIn, st.MessagesIn)
	counter(descInflated, st.MessagesInflated)
	counter(descCompressedUps, st.CompressedUpgrades)
	counter(descBytesIn, st.BytesIn)
	counter(descBytesOut, st.BytesOut)
	counter(descProtocolErrs, st.ProtocolErrors)
	for code, n := range s.CloseCodes() {
		counter(descCloses, n, code)
	}
	counter(descPublishes, hs.MessagesIn)
	counter(descDeliveries, hs.Deliveries)
	gauge(descCompClients, float64(hs.CompressedClients))
	counter(descCompMessages, hs.MessagesCompressed)
	counter(descCompDelivers, hs.CompressedDeliveries)
	counter(descCompSaved, hs.CompressedBytesSaved)
	counter(descReplayed, hs.Replayed)
	counter(descDrops, hs.Drops)
	counter(descSlowCloses, hs.SlowDisconnects)
	counter(descRateLimited, hs.RateLimited)
	gauge(descQueuedBytes, float64(s.QueuedBytes()))
	gauge(descTopics, float64(hs.Topics))
	counter(descTopicsRefused, hs.TopicsRefused)
	gauge(descSubs, float64(hs.Subscriptions))
	gauge(descHistMsgs, float64(hs.HistoryMessages))
	gauge(descHistBytes, float64(hs.HistoryBytes))
	counter(descHistEvicted, hs.HistoryEvicted)
	if hs.NATSConnected != nil {
		up := 0.0
		if *hs.NATSConnected {
			up = 1
		}
		gauge(descNATS, up)
	}
	cumulative, count, sum := c.hub.FanoutLatency()
	buckets := make(map[float64]uint64, len(cumulative))
	for i, b := range broadcast.LatencyBounds {
		buckets[b] = cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(descLatency, count, sum, buckets)
}
