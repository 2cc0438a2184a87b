/**
 * The chat page served at `/`: one self-contained HTML document (no build step, no assets), which
 * streams replies from /v1/chat/completions and shows each reply's KV report: bytes stored against
 * the full cache, the compression, and how many tokens each layer's heads kept.
 */
import { methodNames, type CompressionRequest } from '../compress/registry.ts';

export interface PageSettings { model: string; needsKey: boolean; kv: CompressionRequest }

const STYLE = `
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: #1d232a; background: #f4f5f7; }
header { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; padding: 10px 16px; background: #1d232a; color: #fff; }
header h1 { font-size: 17px; margin: 0 12px 0 0; }
header label { font-size: 13px; display: flex; gap: 6px; align-items: center; }
header input, header select { font: inherit; font-size: 13px; padding: 3px 6px; border-radius: 4px; border: 1px solid #667; }
header input[type=number] { width: 80px; }
main { max-width: 980px; margin: 0 auto; padding: 16px; }
#log { display: flex; flex-direction: column; gap: 12px; }
.msg { padding: 10px 14px; border-radius: 8px; white-space: pre-wrap; word-wrap: break-word; }
.user { align-self: flex-end; background: #dbe8ff; max-width: 80%; }
.assistant { align-self: flex-start; background: #fff; border: 1px solid #dde; width: 100%; }
.error { align-self: stretch; background: #ffe3e3; color: #8a1010; }
.kv { margin-top: 10px; padding-top: 8px; border-top: 1px dashed #ccd; font-size: 13px; white-space: normal; color: #34404c; }
.kv .bar { height: 10px; background: #e4e7ec; border-radius: 5px; overflow: hidden; margin: 4px 0 8px; }
.kv .bar span { display: block; height: 100%; background: #2f7de1; }
.grid { display: grid; gap: 2px; margin-top: 6px; }
.grid div { height: 14px; border-radius: 2px; }
.grid .lab { height: auto; font-size: 11px; color: #667; text-align: right; padding-right: 4px; }
form { display: flex; gap: 8px; margin-top: 16px; }
textarea { flex: 1; font: inherit; padding: 8px; border-radius: 6px; border: 1px solid #bbc; min-height: 60px; }
button { font: inherit; padding: 8px 18px; border-radius: 6px; border: 0; background: #2f7de1; color: #fff; cursor: pointer; }
button:disabled { background: #99a; }
`;

const SCRIPT = `
const cfg = JSON.parse(document.getElementById('cfg').textContent);
const log = document.getElementById('log');
const form = document.getElementById('form');
const input = document.getElementById('prompt');
const send = document.getElementById('send');
const method = document.getElementById('method');
const budget = document.getElementById('budget');
const maxTokens = document.getElementById('max-tokens');
const history = [];
method.value = cfg.kv.method;
if (cfg.kv.budget !== undefined) budget.value = cfg.kv.budget;

function fmtBytes(n) {
  if (n >= 1048576) return (n / 1048576).toFixed(2) + ' MiB';
  if (n >= 1024) return (n / 1024).toFixed(1) + ' KiB';
  return n + ' B';
}
function add(cls, text) {
  const d = document.createElement('div');
  d.className = 'msg ' + cls;
  d.textContent = text;
  log.appendChild(d);
  d.scrollIntoView({ block: 'end' });
  return d;
}
function kvPanel(kv) {
  const p = document.createElement('div');
  p.className = 'kv';
  p.dataset.testid = 'kv-panel';
  const share = kv.fullBytes > 0 ? kv.storedBytes / kv.fullBytes : 1;
  const title = document.createElement('div');
  title.textContent = 'KV ' + kv.method + (kv.budget !== null && isFinite(kv.budget) ? ' (budget ' + kv.budget + ')' : '') +
    ': ' + fmtBytes(kv.storedBytes) + ' stored vs ' + fmtBytes(kv.fullBytes) + ' for the full cache, compression ' +
    kv.compressionRatio.toFixed(2) + 'x; tokens per head min ' + kv.kvsPerHead.min + ' / mean ' + kv.kvsPerHead.mean.toFixed(1) + ' / max ' + kv.kvsPerHead.max;
  p.appendChild(title);
  const bar = document.createElement('div');
  bar.className = 'bar';
  const fill = document.createElement('span');
  fill.style.width = Math.max(0.5, Math.min(100, share * 100)).toFixed(1) + '%';
  bar.appendChild(fill);
  p.appendChild(bar);
  const ph = kv.perHead;
  const cap = Math.max(1, ...ph.kvs);
  const grid = document.createElement('div');
  grid.className = 'grid';
  grid.style.gridTemplateColumns = '56px repeat(' + ph.heads + ', minmax(8px, 1fr))';
  for (let l = 0; l < ph.layers; l++) {
    const lab = document.createElement('div');
    lab.className = 'lab';
    lab.textContent = 'layer ' + l;
    grid.appendChild(lab);
    for (let h = 0; h < ph.heads; h++) {
      const n = ph.kvs[l * ph.heads + h];
      const c = document.createElement('div');
      const t = n / cap;
      c.style.background = 'rgb(' + Math.round(230 - 190 * t) + ',' + Math.round(236 - 111 * t) + ',' + Math.round(245 - 20 * t) + ')';
      c.title = 'layer ' + l + ', head ' + h + ': ' + n + ' tokens kept';
      grid.appendChild(c);
    }
  }
  p.appendChild(grid);
  const note = document.createElement('div');
  note.textContent = 'Each cell is one head of one layer; darker keeps more tokens (at most ' + cap + ').';
  p.appendChild(note);
  return p;
}
form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  add('user', text);
  history.push({ role: 'user', content: text });
  const out = add('assistant', '');
  out.dataset.testid = 'reply';
  const body = out.appendChild(document.createElement('div'));
  send.disabled = true;
  const kv = { method: method.value };
  if (budget.value !== '') kv.budget = Number(budget.value);
  const headers = { 'content-type': 'application/json' };
  const key = document.getElementById('key');
  if (key && key.value) headers.authorization = 'Bearer ' + key.value;
  let reply = '';
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST', headers,
      body: JSON.stringify({ model: cfg.model, messages: history, stream: true, max_tokens: Number(maxTokens.value), temperature: 0, kv }),
    });
    if (!res.ok) throw new Error((await res.json()).error.message);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\\n\\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 2);
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') continue;
        const msg = JSON.parse(data);
        if (msg.error) throw new Error(msg.error.message);
        const d = msg.choices[0] && msg.choices[0].delta;
        if (d && d.content) { reply += d.content; body.textContent = reply; }
        if (msg.kv) out.appendChild(kvPanel(msg.kv));
      }
    }
    history.push({ role: 'assistant', content: reply });
  } catch (e) {
    out.remove();
    history.pop();
    add('error', String(e.message || e));
  } finally {
    send.disabled = false;
    input.focus();
  }
});
input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); } });
`;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function chatPage(s: PageSettings): string {
  const cfg = JSON.stringify({ model: s.model, kv: s.kv }).replace(/</g, '\\u003c');
  const options = methodNames().map((m) => `<option value="${escapeHtml(m)}">${escapeHtml(m)}</option>`).join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rocketkv · ${escapeHtml(s.model)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>rocketkv · ${escapeHtml(s.model)}</h1>
<label>KV method <select id="method">${options}</select></label>
<label>budget <input id="budget" type="number" min="1" placeholder="tokens"></label>
<label>max tokens <input id="max-tokens" type="number" min="1" value="128"></label>
${s.needsKey ? '<label>API key <input id="key" type="password" autocomplete="off"></label>' : ''}
</header>
<main>
<div id="log"></div>
<form id="form"><textarea id="prompt" placeholder="Write a message; Enter sends, Shift+Enter adds a line"></textarea><button id="send" type="submit">Send</button></form>
</main>
<script type="application/json" id="cfg">${cfg}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
