// The live page: polls /page/summary for the charts, tiles and topics, and
// runs a console on the browser client, /fanout.js. No build step.

import { Client } from "/fanout.js";

const $ = (id) => document.getElementById(id);

const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return fmt.format(n) + " " + units[i];
}

// rates turns cumulative delivery counts into per-second points.
function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = (b.t - a.t) / 1000;
    if (dt > 0) out.push({ t: b.t, v: Math.max(0, b.deliveries - a.deliveries) / dt });
  }
  return out;
}

// draw plots points ({t, v}) as a line over the last span milliseconds.
function draw(canvas, points, label, span) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const top = 14, bottom = h - 4;
  const max = Math.max(1, ...points.map((p) => p.v));
  const end = points.length ? points[points.length - 1].t : Date.now();
  const x = (t) => w - ((end - t) / span) * w;
  const y = (v) => bottom - (v / max) * (bottom - top);
  g.strokeStyle = "#d6dbe0";
  g.beginPath();
  g.moveTo(0, bottom + 0.5);
  g.lineTo(w, bottom + 0.5);
  g.stroke();
  g.fillStyle = "#5b6570";
  g.font = "11px system-ui, sans-serif";
  g.fillText("max " + label(max), 4, 11);
  g.fillText(Math.round(span / 60000) + " min", w - 40, 11);
  if (!points.length) return;
  g.strokeStyle = "#0b63c9";
  g.lineWidth = 1.5;
  g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
  g.stroke();
}

function topics(list, total) {
  const body = $("top");
  body.replaceChildren(...list.map((t) => {
    const tr = document.createElement("tr");
    for (const v of [t.name, fmt.format(t.subscribers), String(t.seq)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    tr.title = "epoch " + t.epoch;
    return tr;
  }));
  $("top-note").textContent = total > list.length ? `${list.length} of ${fmt.format(total)} topics` : "";
}

let authShown = false;

async function poll() {
  let wait = 2000;
  try {
    const r = await fetch("/page/summary", { cache: "no-store" });
    if (!r.ok) throw new Error("status " + r.status);
    const s = await r.json();
    wait = Math.max(1000, s.interval_ms);
    const samples = s.samples.concat(s.samples.length && s.samples[s.samples.length - 1].t >= s.now.t ? [] : [s.now]);
    // The chart spans what the server holds: from one minute, as it fills,
    // up to the whole ring.
    const held = samples.length ? samples[samples.length - 1].t - samples[0].t : 0;
    const span = Math.max(60000, Math.ceil(held / 60000) * 60000);
    const rs = rates(samples);
    $("connections").textContent = fmt.format(s.now.connections);
    $("rate").textContent = rs.length ? fmt.format(rs[rs.length - 1].v) : "–";
    $("queued").textContent = bytes(s.now.queued_bytes);
    $("topics").textContent = fmt.format(s.topics);
    draw($("chart-connections"), samples.map((p) => ({ t: p.t, v: p.connections })), fmt.format, span);
    draw($("chart-rate"), rs, fmt.format, span);
    draw($("chart-queued"), samples.map((p) => ({ t: p.t, v: p.queued_bytes })), bytes, span);
    topics(s.top, s.topics);
    if (s.auth && !authShown) {
      $("token-row").hidden = false;
      authShown = true;
    }
    $("status").textContent = "live, updated " + new Date(s.now.t).toLocaleTimeString();
    $("status").classList.remove("bad");
  } catch (e) {
    $("status").textContent = "server unreachable (" + e.message + ")";
    $("status").classList.add("bad");
  }
  setTimeout(poll, wait);
}

// The console: a client of /fanout.js, made on first use, which
// reconnects and recovers on its own and reports every loss.
let client = null;
let everConnected = false;

function log(text, cls) {
  const ol = $("log");
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  ol.append(li);
  while (ol.children.length > 200) ol.firstChild.remove();
  ol.scrollTop = ol.scrollHeight;
}

function onEvent(e) {
  const { kind, ...rest } = e;
  const bad = kind === "disconnected" || kind === "lost" || kind === "refused" || kind === "ended";
  log(`· ${kind} ${JSON.stringify(rest)}`, bad ? "err" : "out");
  if (kind === "connected") everConnected = true;
  if (kind === "disconnected" && !everConnected) {
    // The browser does not say why a handshake was refused.
    log("could not connect: the server refused the WebSocket (a missing or bad token, or an origin --allowed-origins does not list); retrying", "err");
  }
}

function console_() {
  if (!client) {
    everConnected = false;
    client = new Client(location.href, { token: () => $("token").value.trim(), onEvent });
  }
  return client;
}

$("subscribe").addEventListener("click", () => {
  const topic = $("topic").value.trim();
  try {
    console_().subscribe(topic, (m) => log("← " + JSON.stringify({ topic: m.topic, seq: m.seq, data: m.data })));
    log("→ subscribe " + topic, "out");
  } catch (e) {
    log(e.message, "err");
  }
});
$("unsubscribe").addEventListener("click", () => {
  const topic = $("topic").value.trim();
  if (client && client.unsubscribe(topic)) log("→ unsubscribe " + topic, "out");
  else log("not subscribed to " + topic, "err");
});
$("publish").addEventListener("click", async () => {
  let data;
  try {
    data = JSON.parse($("data").value);
  } catch (e) {
    log("data is not JSON: " + e.message, "err");
    return;
  }
  const topic = $("topic").value.trim();
  try {
    const seq = await console_().publish(topic, data);
    log(`→ published ${topic} seq ${seq}`, "out");
  } catch (e) {
    log(e.message, "err");
  }
});
$("token").addEventListener("change", () => {
  // A new token: a new client, whose subscriptions start afresh.
  if (client) client.close();
  client = null;
});
$("console").addEventListener("submit", (e) => e.preventDefault());

poll();
