// fanout.js: a browser client of fanout's wire protocol v1 that never loses
// a message silently. One small ES module with no dependencies, served by
// the server at /fanout.js. It does what the Go package
// github.com/fanout/fanout/client does:
//
//   - reconnects with exponential backoff and full jitter, the waits
//     growing across connections that last less than 10 s;
//   - asks options.token (a string, or a function that returns one or a
//     promise of one) before every attempt, and after a 4001 (token
//     expired) does not reconnect until it returns another; with no token
//     function a 4001 ends it;
//   - resubscribes every topic with since=topic:seq@epoch;
//   - delivers each seq once and in order (duplicates dropped, a gap the
//     server did not announce asks again from the last seq delivered);
//   - reports every loss as a "lost" event: "dropped" (the server skipped
//     messages for a slow reader), "not_recovered" (history no longer holds
//     them), "new_epoch" (the topic's history started afresh, as after a
//     restart).
//
//   import { Client } from "/fanout.js";
//   const c = new Client("wss://push.example.com", { token: getToken, onEvent: console.log });
//   c.subscribe("prices", (m) => show(m.topic, m.seq, m.data));
//   await c.publish("prices", { eur: 1.08 });

const STABLE_AFTER = 10000; // ms a connection must last for the backoff to start over
const MAX_QUERY = 4096; // bytes of topics and since in the handshake's query
const RETRY_AFTER = 1000; // ms before a request refused for the rate is sent again
const CONNECT_TIMEOUT = 10000; // ms a connection attempt, token included, may take (connectTimeout)

function validTopic(name) {
  return typeof name === "string" && /^[A-Za-z0-9\-_.:@/]+$/.test(name);
}

export class Client {
  // url: ws(s)://host[:port][/path] (path default /ws), or http(s)://...
  // options: token, onEvent(event), minBackoff (ms, 100), maxBackoff (ms, 30000),
  // connectTimeout (ms, 10000: a connection attempt, the token's wait included).
  constructor(url, options = {}) {
    const u = new URL(url, typeof location === "undefined" ? undefined : location.href);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    if (u.pathname === "" || u.pathname === "/") u.pathname = "/ws";
    this.wsURL = u;
    const p = new URL(u.href);
    p.protocol = u.protocol === "wss:" ? "https:" : "http:";
    p.pathname = "/publish";
    p.search = "";
    this.publishURL = p;
    this.token = options.token;
    this.onEvent = options.onEvent || (() => {});
    this.minBackoff = options.minBackoff || 100;
    this.maxBackoff = Math.max(options.maxBackoff || 30000, this.minBackoff);
    this.connectTimeout = options.connectTimeout || CONNECT_TIMEOUT;
    this.attempt = 0; // of the backoff
    this.tries = 0; // connection attempts since the last connection
    this.subs = new Map(); // topic -> {handler, known, seq, epoch, awaiting, want}
    this.pending = []; // requests sent and not yet answered, oldest first
    this.lastId = 0;
    this.ws = null;
    this.closed = false;
    this.useQuery = true;
    this.connect();
  }

  emit(e) {
    try {
      this.onEvent(e);
    } catch (err) {
      setTimeout(() => { throw err; }); // the application's error, not ours
    }
  }

  // subscribe(topic, handler): handler({topic, seq, data}) gets each message
  // once, in order.
  subscribe(topic, handler) {
    if (this.closed) throw new Error("fanout: client closed");
    if (!validTopic(topic)) throw new Error(`fanout: ${JSON.stringify(topic)} is not a topic name`);
    if (this.subs.has(topic)) throw new Error(`fanout: already subscribed to ${topic}`);
    const open = this.ws && this.ws.readyState === WebSocket.OPEN;
    this.subs.set(topic, { handler, known: false, seq: 0, epoch: "", awaiting: open, want: 0 });
    if (open) this.send({ type: "subscribe", topic });
  }

  unsubscribe(topic) {
    if (!this.subs.delete(topic)) return false;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.send({ type: "unsubscribe", topic });
    return true;
  }

  // publish(topic, data) posts data (any JSON value) to POST /publish and
  // resolves to its seq. It works while the WebSocket reconnects.
  async publish(topic, data) {
    const u = new URL(this.publishURL.href);
    u.searchParams.set("topic", topic);
    const headers = { "Content-Type": "application/json" };
    const token = await this.currentToken();
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(u, { method: "POST", headers, body: JSON.stringify(data) });
    const body = await r.text();
    if (r.status !== 202 && r.status !== 200) throw new Error(`fanout: publish refused with ${r.status}: ${body.trim()}`);
    return JSON.parse(body).seq;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  async currentToken() {
    const t = this.token;
    if (typeof t === "function") return await t();
    return t || "";
  }

  backoff() {
    const ceil = Math.min(this.maxBackoff, this.minBackoff * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.random() * ceil;
  }

  async connect() {
    if (this.closed) return;
    this.tries++;
    const deadline = Date.now() + this.connectTimeout; // the token's wait and the handshake's together
    let token = "";
    try {
      let timer;
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no token within " + this.connectTimeout + " ms")), this.connectTimeout);
      });
      try {
        token = await Promise.race([this.currentToken(), late]);
      } finally {
        clearTimeout(timer);
      }
    } catch (err) {
      this.emit({ kind: "disconnected", code: 0, error: "token: " + err });
      this.retry();
      return;
    }
    if (this.closed) return;
    if (this.staleToken && token === this.staleToken) {
      // The server expired this one (4001): wait for another.
      this.emit({ kind: "disconnected", code: 0, error: "the token function returned the expired token; waiting for another" });
      this.retry();
      return;
    }
    this.staleToken = "";
    this.lastToken = token;
    // The query: user topics first (the server subscribes the user's own
    // already, so they cannot go by message), then others while they fit,
    // unless the last attempt with them failed before it opened (a browser
    // does not say whether for a 400); the rest by message once open.
    const topics = [], since = [], inQuery = new Set();
    let size = 0;
    for (const pass of this.useQuery ? [0, 1] : [0]) {
      for (const [topic, s] of this.subs) {
        if (inQuery.has(topic) || (pass === 0) !== topic.startsWith("user:")) continue;
        let item = "";
        if (s.known) item = `${topic}:${s.seq}` + (s.epoch ? "@" + s.epoch : "");
        const n = encodeURIComponent(topic).length + 3 + (item ? encodeURIComponent(item).length + 3 : 0);
        if (pass === 1 && size + n > MAX_QUERY) continue;
        size += n;
        topics.push(topic);
        if (item) since.push(item);
        inQuery.add(topic);
        s.awaiting = true;
        s.want = 0;
      }
    }
    const u = new URL(this.wsURL.href);
    if (topics.length) u.searchParams.set("topics", topics.join(","));
    if (since.length) u.searchParams.set("since", since.join(","));
    if (token) u.searchParams.set("token", token);
    const ws = new WebSocket(u.href);
    this.ws = ws;
    this.pending = [];
    let opened = false, up = 0;
    const timeout = setTimeout(() => ws.close(), Math.max(0, deadline - Date.now())); // onclose follows
    ws.onerror = () => {}; // onclose follows, with the code
    ws.onopen = () => {
      clearTimeout(timeout);
      opened = true;
      up = Date.now();
      this.emit({ kind: "connected", attempt: this.tries });
      this.tries = 0;
      for (const [topic, s] of this.subs) {
        if (inQuery.has(topic)) continue;
        s.awaiting = true;
        const r = { type: "subscribe", topic };
        if (s.known) {
          r.since = s.seq;
          if (s.epoch) r.epoch = s.epoch;
        }
        this.send(r);
      }
      for (const topic of inQuery) {
        if (!this.subs.has(topic)) this.send({ type: "unsubscribe", topic });
      }
    };
    ws.onmessage = (e) => {
      let f;
      try {
        f = JSON.parse(e.data);
      } catch {
        return;
      }
      this.handle(ws, f);
    };
    ws.onclose = (e) => {
      clearTimeout(timeout);
      if (this.ws === ws) this.ws = null;
      if (this.closed) return;
      this.emit({ kind: "disconnected", code: e.code, reason: e.reason });
      if (opened) {
        this.useQuery = true;
      } else {
        // Refused, perhaps for the query (a topic too long, too many),
        // or the server is down: try with and without it in turn.
        this.useQuery = !this.useQuery;
      }
      if (e.code === 4001) {
        if (typeof this.token !== "function") {
          this.closed = true;
          this.emit({ kind: "ended", error: "token expired, and no token function to get another" });
          return;
        }
        this.staleToken = this.lastToken; // no reconnect until the function gives another
      }
      if (opened && Date.now() - up >= STABLE_AFTER) this.attempt = 0;
      this.retry();
    };
  }

  retry() {
    this.timer = setTimeout(() => this.connect(), this.backoff());
  }

  send(r) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    r = { ...r, id: ++this.lastId };
    this.pending.push(r);
    const s = this.subs.get(r.topic);
    if (s && r.type === "subscribe") s.want = r.id;
    const { tries, ...wire } = r;
    ws.send(JSON.stringify(wire));
  }

  // resubscribe unsubscribes topic and subscribes it again, from since
  // (undefined: from now) in epoch.
  resubscribe(topic, since, epoch) {
    this.send({ type: "unsubscribe", topic });
    const r = { type: "subscribe", topic };
    if (since !== undefined) r.since = since;
    if (epoch) r.epoch = epoch;
    this.send(r);
  }

  resend(ws, r) {
    const wait = RETRY_AFTER * 2 ** Math.min(r.tries || 0, 5);
    setTimeout(() => {
      if (this.ws !== ws) return;
      const s = this.subs.get(r.topic);
      if ((r.type === "subscribe" && s && s.want === r.id) || (r.type === "unsubscribe" && !s)) {
        this.send({ ...r, tries: (r.tries || 0) + 1 });
      }
    }, wait);
  }

  handle(ws, f) {
    // Answers come in the order of the requests: one with an id answers
    // it (those before it went unanswered: refused unread); a rate_limited
    // error has no id and answers the oldest.
    let req = null;
    if (f.type && f.id) {
      while (this.pending.length) {
        const head = this.pending.shift();
        if (head.id === f.id) {
          req = head;
          f.topic = req.topic;
          break;
        }
        this.resend(ws, head);
      }
    } else if (f.type === "error" && f.code === "rate_limited" && this.pending.length) {
      req = this.pending.shift();
      f.topic = req.topic;
      this.resend(ws, req);
      return;
    }
    const s = this.subs.get(f.topic);
    switch (f.type) {
      case undefined: {
        if (!s || s.awaiting || (s.known && f.seq <= s.seq)) return;
        if (s.known && f.seq > s.seq + 1) {
          s.awaiting = true;
          this.resubscribe(f.topic, s.seq, s.epoch);
          return;
        }
        s.seq = f.seq;
        s.known = true;
        s.handler({ topic: f.topic, seq: f.seq, data: f.data });
        return;
      }
      case "subscribed": {
        if (!s || !s.awaiting || (f.id || 0) !== s.want) return;
        s.awaiting = false;
        if (s.known && !f.recovered) {
          if (s.epoch && f.epoch !== s.epoch) {
            this.emit({ kind: "lost", topic: f.topic, reason: "new_epoch", from: 1, to: f.seq, epoch: f.epoch, prevEpoch: s.epoch, prevSeq: s.seq });
          } else if (f.seq > s.seq) {
            this.emit({ kind: "lost", topic: f.topic, reason: "not_recovered", from: s.seq + 1, to: f.seq, epoch: f.epoch });
          }
        }
        // A reply below the last seq delivered, in the same epoch, comes
        // from a cluster node that is behind: what it sends again up to
        // the last seq delivered is dropped as a duplicate.
        if (!s.known || f.epoch !== s.epoch || f.seq > s.seq) s.seq = f.seq;
        s.epoch = f.epoch;
        s.known = true;
        this.emit({ kind: "subscribed", topic: f.topic, seq: s.seq, epoch: f.epoch, recovered: f.recovered });
        return;
      }
      case "dropped": {
        if (!s || s.awaiting || (s.known && f.to <= s.seq)) return;
        s.seq = f.to;
        s.known = true;
        this.emit({ kind: "lost", topic: f.topic, reason: "dropped", from: f.from, to: f.to, epoch: s.epoch });
        return;
      }
      case "error": {
        if (f.code === "not_subscribed") return;
        if (s && s.awaiting && req && req.type === "subscribe" && req.id === s.want) {
          if (f.code === "already_subscribed") {
            // The server had it already: the token's own user: topic, or
            // a subscription whose unsubscribe (before a subscribe from
            // the last seq, after a gap) was refused for the rate. Subscribe
            // again, for a reply that says where messages start, from the
            // same seq: what it can still replay is not lost.
            this.resubscribe(f.topic, req.since, req.epoch);
            return;
          }
          if (f.code === "unavailable") {
            // The server is shutting down, and the next connection
            // subscribes it; or a cluster node is cut off from NATS and
            // keeps the connection: ask again, later.
            this.resend(ws, req);
          } else {
            this.subs.delete(f.topic);
          }
        }
        this.emit({ kind: "refused", topic: f.topic, code: f.code, error: f.message });
        return;
      }
    }
  }
}
