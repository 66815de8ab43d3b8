// Live dashboard: polls the JSON API once a second and draws pipe depth charts.
// Everything is built with textContent, so nothing from the server is parsed as HTML.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const history = new Map(); // client id -> array of pipe_bytes samples
const HISTORY = 60;

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

function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }

function button(label, cls, onclick) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls; b.type = "button";
  b.addEventListener("click", onclick);
  return b;
}

function drawChart(canvas, samples) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...samples);
  ctx.strokeStyle = "#2a6"; ctx.lineWidth = 1.5; ctx.beginPath();
  samples.forEach((v, i) => {
    const x = (i / (HISTORY - 1)) * (w - 2) + 1, y = h - 1 - (v / max) * (h - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#555"; ctx.font = "9px sans-serif"; ctx.fillText(max + " B", 2, 9);
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
  const box = document.getElementById("allow-multiple");
  if (document.activeElement !== box) box.checked = s.allow_multiple_clients;
}

// Sound: the playback mode, frames sent and dropped, what waits in the pipe; and whether it records.
function audioText(c) {
  const p = c.playback;
  if (!p) return "-";
  const rec = c.record && c.record.recording ? ", recording" : "";
  return `${p.mode}: ${p.frames_sent} sent, ${p.frames_dropped} dropped, ${p.queued_ms} ms queued${rec}`;
}

function renderClients(clients) {
  const tbody = document.querySelector("#clients tbody");
  tbody.replaceChildren();
  document.getElementById("client-count").textContent = clients.length;
  const seen = new Set();
  for (const c of clients) {
    seen.add(c.id);
    const h = history.get(c.id) || [];
    h.push(c.pipe_bytes); while (h.length > HISTORY) h.shift();
    history.set(c.id, h);
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    cell(tr, "0x" + c.id.toString(16));
    cell(tr, c.address);
    cell(tr, new Date(c.connected_since * 1000).toLocaleTimeString());
    cell(tr, c.primary ? "yes" : "");
    cell(tr, c.view_only ? "yes" : "no").className = "view-only";
    cell(tr, c.channels.map(ch => `${ch.channel}: ${ch.pipe_items} / ${ch.pipe_bytes}`).join("\n")).className = "channels";
    cell(tr, c.bytes_per_second);
    cell(tr, c.rtt_ms === null ? "-" : c.rtt_ms.toFixed(2) + " ms");
    cell(tr, c.link ? `${c.image_mode} (${c.link.wan ? "WAN" : "LAN"}${c.link.bandwidth_bps === null ? "" : ", " + (c.link.bandwidth_bps / 1e6).toFixed(1) + " Mbit/s"})` : c.image_mode);
    cell(tr, audioText(c)).className = "audio";
    cell(tr, c.coalesced);
    const chartTd = cell(tr, "");
    const canvas = document.createElement("canvas");
    canvas.width = 160; canvas.height = 36; canvas.className = "chart";
    chartTd.appendChild(canvas);
    drawChart(canvas, h);
    const actions = cell(tr, "");
    actions.appendChild(button(c.view_only ? "Let drive" : "View-only", "toggle-view-only", () =>
      api("PATCH", `/api/clients/${c.id}`, { view_only: !c.view_only }).then(refresh).catch(e => status(e.message))));
    actions.appendChild(button("Disconnect", "disconnect", () =>
      api("POST", `/api/clients/${c.id}/disconnect`).then(() => { status(`disconnected 0x${c.id.toString(16)}`); refresh(); }).catch(e => status(e.message))));
    tbody.appendChild(tr);
  }
  for (const id of history.keys()) if (!seen.has(id)) history.delete(id);
}

async function refresh() {
  try {
    const [s, clients] = await Promise.all([api("GET", "/api/server"), api("GET", "/api/clients")]);
    renderServer(s);
    renderClients(clients);
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
