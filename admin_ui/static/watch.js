// The watch page: spice-html5 (served by this admin site from the server's own copy) on
// the server's SPICE port over WebSocket. The SPICE password is asked for here and sent
// only inside the SPICE link (RSA-encrypted), never in a URL. View-only stops every
// mouse and keyboard event before spice-html5's handlers see it, so nothing is sent.
import * as SpiceHtml5 from '/watch/spice-html5/main.js';

const root = document.getElementById('watch');
const form = document.getElementById('connect-form');
const panel = document.getElementById('connect-panel');
const errorBox = document.getElementById('watch-error');
const statusBox = document.getElementById('watch-status');
const screen = document.getElementById('spice-screen');
const INPUT_EVENTS = ['mousedown', 'mouseup', 'mousemove', 'click', 'dblclick', 'contextmenu', 'wheel',
                      'keydown', 'keyup', 'keypress', 'touchstart', 'touchmove', 'touchend', 'pointerdown', 'pointerup'];
let conn = null;
let viewOnly = false;

function swallow(e) {
  if (viewOnly) { e.stopImmediatePropagation(); e.preventDefault(); }
}
for (const type of INPUT_EVENTS) screen.addEventListener(type, swallow, {capture: true, passive: false});

function spiceUri() {
  // ?via=ws: through this site's own /ws (one port, for a reverse proxy in front).
  if (new URLSearchParams(location.search).get('via') === 'ws') {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  }
  const host = location.hostname.includes(':') && !location.hostname.startsWith('[') ? `[${location.hostname}]` : location.hostname;
  const port = root.dataset.port, tlsPort = root.dataset.tlsPort;
  // A page over HTTPS may only open wss://; over HTTP the plain port is preferred.
  if (tlsPort && (location.protocol === 'https:' || !port)) return `wss://${host}:${tlsPort}/`;
  if (port && location.protocol !== 'https:') return `ws://${host}:${port}/`;
  return null;
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
  panel.hidden = false;
  statusBox.hidden = true;
  window.watchState = 'error';
}

function stop() {
  if (conn) { try { conn.stop(); } catch (e) { /* already closed */ } conn = null; }
  screen.replaceChildren();
}

function connect(event) {
  event.preventDefault();
  stop();
  const uri = spiceUri();
  if (!uri) { showError('This page is served over HTTPS but the server has no TLS port: it cannot connect.'); return; }
  window.watchUri = uri;  // where it connects, for a look from the console (and the tests)
  const pw = document.getElementById('password');
  viewOnly = document.getElementById('view-only').checked;
  errorBox.hidden = true;
  window.watchState = 'connecting';
  try {
    conn = new SpiceHtml5.SpiceMainConn({
      uri, screen_id: 'spice-screen', message_id: 'spice-messages', password: pw ? pw.value : '',
      onerror: (e) => {
        const why = String((e && e.message) || e || 'the connection failed');
        stop();
        showError(why === 'Permission denied.' || why === 'Bad password.' ? 'Wrong password.' : `Disconnected: ${why}`);
      },
      onsuccess: () => {
        panel.hidden = true;
        statusBox.textContent = viewOnly ? 'connected, view only' : 'connected';
        statusBox.hidden = false;
        window.watchState = 'connected';
      },
    });
  } catch (e) {
    showError(`Cannot connect: ${e.message || e}`);
  }
}

form.addEventListener('submit', connect);
window.watchState = 'ready';
