// Live dashboard: one poll of /api/dashboard a second draws the server facts, the display's
// thumbnail, each client's row with small SVG charts of its last minutes, and the events.
// Everything is built with textContent and DOM calls, so nothing from the server is parsed
// as HTML; the charts are SVG elements made here (no chart library, nothing from a CDN).
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
const MAX_EVENTS = 200;
const series = new Map(); // client id -> rows [seq, time, bytes/s, rtt ms, pipe bytes, coalesced]
let historySeq = 0, historyKeep = 300, historyEvery = 1, eventsSeq = 0, thumbUrl = null;

async function api(method, path, body) {
  const opts = { method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function status(text) { document.getElementById("status").textContent = text; }

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function button(label, cls, onclick) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls; b.type = "button";
  b.addEventListener("click", onclick);
  return b;
}

function svg(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function rate(bps) {
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " MB/s";
  if (bps >= 1e3) return (bps / 1e3).toFixed(1) + " kB/s";
  return Math.round(bps) + " B/s";
}

function bytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

// A line chart of one column of a client's rows over the kept window (time runs right).
function chart(rows, column, kind, label) {
  const w = 140, h = 34;
  const el = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: `chart ${kind}`, role: "img" });
  const pts = rows.filter(r => r[column] !== null);
  const max = Math.max(1e-9, ...pts.map(r => r[column]));
  const last = rows.length ? rows[rows.length - 1][0] : 0;
  // The x axis spans the samples there are (at least a minute, at most what is kept).
  const span = Math.min(historyKeep, Math.max(60, rows.length ? last - rows[0][0] + 1 : 0));
  const coords = pts.map(r => {
    const x = w - 1 - ((last - r[0]) / Math.max(1, span - 1)) * (w - 2);
    const y = h - 2 - (r[column] / max) * (h - 12);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  el.dataset.points = String(coords.length);
  el.appendChild(svg("rect", { x: 0, y: 0, width: w, height: h, class: "chart-bg" }));
  if (coords.length) el.appendChild(svg("polyline", { points: coords.join(" "), class: "chart-line" }));
  const text = svg("text", { x: 2, y: 9, class: "chart-label" });
  text.textContent = pts.length ? `${label(pts[pts.length - 1][column])} (max ${label(max)})` : "-";
  el.appendChild(text);
  const title = svg("title", {});
  title.textContent = `last ${Math.round((historyKeep * historyEvery) / 60)} minutes`;
  el.appendChild(title);
  return el;
}

function renderServer(s) {
  const ep = s.endpoints;
  document.getElementById("s-listen").textContent = `${ep.listen} port ${ep.port || "-"}, TLS port ${ep.tls_port || "-"}, admin port ${ep.admin_port || "-"}`;
  document.getElementById("s-source").textContent = `${s.source} (${s.width}x${s.height})`;
  document.getElementById("s-uptime").textContent = `${Math.floor(s.uptime)} s`;
  document.getElementById("s-mouse").textContent = s.mouse_mode;
  const t = s.ticket;
  document.getElementById("s-ticket").textContent = !t.enabled ? "none (no password)" :
    t.expired ? "set, expired" : t.expires ? `set, expires ${new Date(t.expires * 1000).toLocaleTimeString()}` : "set";
  const r = s.render;
  document.getElementById("s-render").textContent =
    `${r.drawables} drawables; encodes ${JSON.stringify(r.encodes)}; sends ${r.draws_sent}; coalesced ${r.coalesced}`;
  document.getElementById("streams").textContent = streamsText(r.streams);
  const box = document.getElementById("allow-multiple");
  if (document.activeElement !== box) box.checked = s.allow_multiple_clients;
}

function renderThumbnail(t, s) {
  if (t.url === thumbUrl) return;
  thumbUrl = t.url;
  document.getElementById("thumbnail").src = t.url;
  document.getElementById("thumbnail-note").textContent = `${s.width}x${s.height}, ${new Date().toLocaleTimeString()}`;
}

function addHistory(h) {
  historyKeep = h.keep; historyEvery = h.every; historySeq = Math.max(historySeq, h.seq);
  for (const [id, rows] of Object.entries(h.clients)) {
    const kept = series.get(Number(id)) || [];
    // Two polls may overlap (a button's refresh beside the timer's): keep each sample once.
    for (const r of rows) if (!kept.length || r[0] > kept[kept.length - 1][0]) kept.push(r);
    while (kept.length && kept[0][0] <= historySeq - historyKeep) kept.shift();
    series.set(Number(id), kept);
  }
}

// Sound: the playback mode, frames sent and dropped, what waits in the pipe; and whether it records.
function audioText(c) {
  const p = c.playback;
  if (!p) return "-";
  const rec = c.record && c.record.recording ? ", recording" : "";
  return `${p.mode}: ${p.frames_sent} sent, ${p.frames_dropped} dropped, ${p.queued_ms} ms queued${rec}`;
}

// Video: the codec and tier of the streams it plays and the frames it was sent ("-": none ever).
function videoText(c) {
  const v = c.video;
  if (!v || (!v.playing && !v.frames_sent)) return "-";
  if (!v.playing) return `none now, ${v.frames_sent} frames`;
  return `${v.codecs.join("/")} ${v.tier}, ${v.frames_sent} frames`;
}

// The streams playing now, by the tier codecs their clients get: "1 video 320x180 at 20 fps: mjpeg x3, mjpeg_low x1".
function streamsText(st) {
  const n = st.active.length;
  if (!n) return st.mode === "off" ? "video streaming off" : "no video streams";
  const each = st.active.map(a => {
    const tiers = Object.entries(a.tiers).map(([t, k]) => `${t} x${k}`).join(", ") || "no clients";
    return `${a.width}x${a.height} at ${Math.round(a.fps)} fps: ${tiers}`;
  });
  return `${n} video${n > 1 ? "s" : ""} ${each.join("; ")}`;
}

function renderClients(clients) {
  const tbody = document.querySelector("#clients tbody");
  tbody.replaceChildren();
  document.getElementById("client-count").textContent = clients.length;
  const seen = new Set();
  for (const c of clients) {
    seen.add(c.id);
    const rows = series.get(c.id) || [];
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    tr.dataset.kind = c.kind;
    cell(tr, "0x" + c.id.toString(16));
    cell(tr, c.address, "address");
    cell(tr, c.kind + (c.websocket ? " (WebSocket)" : ""), "kind");
    cell(tr, new Date(c.connected_since * 1000).toLocaleTimeString());
    cell(tr, c.primary ? "yes" : "");
    cell(tr, c.view_only ? "yes" : "no", "view-only");
    cell(tr, c.codec || "-", "codec");
    cell(tr, c.link ? `${c.image_mode} (${c.link.wan ? "WAN" : "LAN"}${c.link.bandwidth_bps === null ? "" : ", " + (c.link.bandwidth_bps / 1e6).toFixed(1) + " Mbit/s"})` : c.image_mode, "mode");
    cell(tr, audioText(c), "audio");
    const video = cell(tr, videoText(c), "video");
    if (c.video && c.video.playing) video.title = `tiers ${c.video.tiers.join(", ")}; play-ahead ${c.video.play_ahead_ms} ms; ${c.video.reports} reports`;
    cell(tr, "", "bandwidth").appendChild(chart(rows, 2, "bandwidth", rate));
    cell(tr, "", "rtt").appendChild(chart(rows, 3, "rtt", v => v.toFixed(1) + " ms"));
    cell(tr, `${c.pipe_items} / ${bytes(c.pipe_bytes)}`, "pipe").title =
      c.channels.map(ch => `${ch.channel}: ${ch.pipe_items} items, ${ch.pipe_bytes} bytes`).join("\n");
    cell(tr, c.coalesced, "drops");
    const actions = cell(tr, "");
    actions.appendChild(button(c.view_only ? "Let drive" : "View-only", "toggle-view-only", () =>
      api("PATCH", `/api/clients/${c.id}`, { view_only: !c.view_only }).then(refresh).catch(e => status(e.message))));
    actions.appendChild(button("Disconnect", "disconnect", () =>
      api("POST", `/api/clients/${c.id}/disconnect`).then(() => { status(`disconnected 0x${c.id.toString(16)}`); refresh(); }).catch(e => status(e.message))));
    tbody.appendChild(tr);
  }
  for (const id of series.keys()) if (!seen.has(id)) series.delete(id);
}

function describe(e) {
  const via = e.websocket ? " over WebSocket" : "";
  switch (e.event) {
    case "session_start": return `client ${e.session} connected from ${e.peer}${e.view_only ? " (view-only)" : ""}`;
    case "session_end": return `client ${e.session} disconnected: ${e.reason}`;
    case "auth_failure": return `failed ticket from ${e.peer} (${e.channel}): ${e.reason}`;
    case "link": return `link from ${e.peer}${via} refused (${e.result}): ${e.reason || ""}`;
    case "admin_login_refused": return `admin login refused from ${e.peer}: ${e.reason}`;
    case "refused": return `${e.kind} from ${e.peer} refused (limit ${e.limit})`;
    case "refused_summary": return `${e.count} ${e.kind} refusals from ${e.peer} in ${e.window} s`;
    case "admin": {
      const what = e.action + (e.session ? ` ${e.session}` : "") + (e.view_only !== undefined ? ` = ${e.view_only}` : "") +
        (e.allow !== undefined ? ` = ${e.allow}` : "");
      return `admin: ${what} by ${e.by}`;
    }
    default: return e.event;
  }
}

function renderEvents(ev) {
  const list = document.getElementById("events");
  for (const e of ev.items) {
    if (e.seq <= eventsSeq) continue; // shown by an overlapping poll already
    eventsSeq = e.seq;
    const li = document.createElement("li");
    li.className = "event ev-" + e.event;
    li.dataset.event = e.event;
    const when = document.createElement("time");
    when.textContent = new Date(e.unix_time * 1000).toLocaleTimeString();
    li.appendChild(when);
    li.appendChild(document.createTextNode(" " + describe(e)));
    list.prepend(li);
  }
  eventsSeq = Math.max(eventsSeq, ev.seq);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

async function refresh() {
  try {
    const d = await api("GET", `/api/dashboard?since=${historySeq}&events_since=${eventsSeq}`);
    renderServer(d.server);
    renderThumbnail(d.thumbnail, d.server);
    addHistory(d.history);
    renderClients(d.clients);
    renderEvents(d.events);
  } catch (e) {
    status("update failed: " + e.message);
  }
}

document.getElementById("allow-multiple").addEventListener("change", e =>
  api("PATCH", "/api/settings", { allow_multiple_clients: e.target.checked })
    .then(r => status(`allow_multiple_clients = ${r.allow_multiple_clients}`)).catch(err => status(err.message)));

document.getElementById("ticket-form").addEventListener("submit", e => {
  e.preventDefault();
  const password = document.getElementById("ticket-password").value;
  const exp = document.getElementById("ticket-expires").value;
  api("POST", "/api/ticket", { password, expires: exp === "" ? null : Number(exp) })
    .then(() => { status("ticket set"); refresh(); }).catch(err => status(err.message));
});
document.getElementById("ticket-clear").addEventListener("click", () =>
  api("POST", "/api/ticket", { password: null }).then(() => { status("ticket cleared"); refresh(); }).catch(err => status(err.message)));
document.getElementById("ticket-expire").addEventListener("click", () =>
  api("POST", "/api/ticket", { expires: 0 }).then(() => { status("ticket expired"); refresh(); }).catch(err => status(err.message)));

refresh();
setInterval(refresh, 1000);
