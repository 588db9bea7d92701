// vial's operator page. Plain JavaScript, no build step, no dependencies.
// Every element is built with textContent: nothing the server returns is
// ever parsed as markup.
'use strict';

const TOKEN_KEY = 'vial.operator-token';
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// ---- the API ---------------------------------------------------------------

class APIError extends Error {
  constructor(status, body) {
    super((body && body.error) || ('HTTP ' + status));
    this.status = status;
    this.body = body || {};
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

// api sends one request with the operator token as a header. The token
// is never put in a URL: URLs end up in logs and in the history.
async function api(method, path, {body, type, headers = {}, raw = false} = {}) {
  const h = Object.assign({'Authorization': 'Bearer ' + token()}, headers);
  if (body !== undefined) h['Content-Type'] = type || 'application/json';
  const res = await fetch(path, {method, headers: h, body, cache: 'no-store', credentials: 'omit', redirect: 'error'});
  if (res.status === 401) {
    signOut('The server refused the token (401). Sign in again with the operator token.');
    throw new APIError(401, {error: 'unauthorized'});
  }
  if (raw) {
    if (!res.ok) throw new APIError(res.status, await res.json().catch(() => null));
    return res;
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = {error: text}; }
  if (!res.ok) throw new APIError(res.status, data);
  return {data, res};
}

// ---- signing in ------------------------------------------------------------

let status = null;

async function signIn(tok) {
  sessionStorage.setItem(TOKEN_KEY, tok);
  try {
    status = (await api('GET', '/api/v1/status')).data;
  } catch (e) {
    if (e.status !== 401) signOut('Could not reach the API: ' + e.message);
    return;
  }
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#tabs').hidden = false;
  $('#logout').hidden = false;
  $('#server-info').textContent = 'vial ' + (status.version || '') + (status.writes ? ' · writes enabled' : ' · read-only');
  await loadConfigLists();
  startPolling();
}

function signOut(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopPolling();
  $('#app').hidden = true;
  $('#tabs').hidden = true;
  $('#logout').hidden = true;
  $('#server-info').textContent = '';
  $('#login').hidden = false;
  $('#login-msg').textContent = msg || '';
  $('#token').value = '';
  $('#token').focus();
}

// ---- tabs ----------------------------------------------------------------

let currentTab = 'config';

function showTab(name) {
  currentTab = name;
  for (const b of $$('#tabs .tab')) b.classList.toggle('active', b.dataset.tab === name);
  for (const p of $$('.tabpage')) p.hidden = p.id !== 'tab-' + name;
  if (name === 'live') refreshLive();
  if (name === 'images') refreshImages();
}

// ---- configuration ---------------------------------------------------------

const SEED_OVERRIDES = '{\n  "sandbox": {\n    "timeout_seconds": 180\n  },\n  "shell": {\n    "env": {\n      "DEBUG": "true"\n    }\n  }\n}\n';

let agent = null; // {id, etag}

async function loadConfigLists() {
  const [t, a] = await Promise.all([
    api('GET', '/api/v1/execution/templates'),
    api('GET', '/api/v1/execution/agents'),
  ]);
  const tl = $('#templates');
  tl.replaceChildren();
  for (const tp of t.data.templates) {
    tl.append(el('li', {'data-name': tp.name},
      el('button', {type: 'button', class: 'link', text: tp.name, onclick: () => openTemplate(tp.name)}),
      tp.extends ? el('span', {class: 'dim small', text: ' extends ' + tp.extends}) : null,
      tp.description ? el('div', {class: 'dim small', text: tp.description}) : null));
  }
  const al = $('#agents');
  al.replaceChildren();
  for (const ag of a.data.agents) {
    al.append(el('li', {'data-id': ag.id},
      el('button', {type: 'button', class: 'link', text: ag.id, onclick: () => openAgent(ag.id)}),
      ag.problems ? el('span', {class: 'bad-tag', text: ' ' + ag.problems + ' problem' + (ag.problems > 1 ? 's' : '')}) : null,
      ag.name ? el('div', {class: 'dim small', text: ag.name + (ag.extends ? ' · extends ' + ag.extends : '')}) : null));
  }
  const envSel = $('#build-env');
  envSel.replaceChildren(el('option', {value: '', text: '—'}));
  for (const tp of t.data.templates) envSel.append(el('option', {value: tp.name, text: tp.name}));
}

function showView(id) {
  for (const v of ['welcome', 'agent-view', 'template-view', 'catalogue-view']) $('#' + v).hidden = v !== id;
  for (const li of $$('#templates li, #agents li')) li.classList.remove('selected');
}

async function openAgent(id) {
  showView('agent-view');
  $(`#agents li[data-id="${CSS.escape(id)}"]`)?.classList.add('selected');
  $('#agent-title').textContent = id;
  setMsg('#editor-msg', '');
  clearProblems();
  if (!$('#overrides').value) $('#overrides').value = SEED_OVERRIDES;
  $('#changes').hidden = true;
  $('#preview-msg').textContent = '';
  try {
    const f = (await api('GET', `/api/v1/execution/agents/${encodeURIComponent(id)}/config`)).data;
    agent = {id, etag: f.sha256};
    $('#agent-file').textContent = f.file;
    $('#editor').value = f.toml;
    $('#editor').readOnly = !status.writes;
    $('#save').disabled = !status.writes;
    $('#save').title = status.writes ? '' : 'read-only: vial serve runs without --api-allow-writes';
    updateGutter();
  } catch (e) {
    setMsg('#editor-msg', e.message, 'bad');
  }
  await showResolved(id);
}

async function showResolved(id) {
  const tbody = $('#resolved tbody');
  try {
    const r = (await api('GET', `/api/v1/execution/agents/${encodeURIComponent(id)}/config?resolve=true`)).data;
    $('#chain').textContent = r.chain.join('  →  ');
    fillValues(tbody, r.values);
    const w = $('#warnings');
    w.replaceChildren(...r.warnings.map(x => el('li', {text: x})));
  } catch (e) {
    $('#chain').textContent = '';
    tbody.replaceChildren(el('tr', {}, el('td', {colSpan: 4, class: 'bad', text: e.message})));
    if (e.body && e.body.problems) {
      $('#warnings').replaceChildren(...e.body.problems.map(p => el('li', {class: 'bad', text: where(p) + p.message})));
    }
  }
}

function where(p) {
  if (!p.file) return '';
  return p.line ? `${p.file}:${p.line}:${p.col}: ` : p.file + ': ';
}

function fillValues(tbody, values) {
  tbody.replaceChildren(...values.map(v => el('tr', {'data-key': v.key, class: 'layer-' + v.layer.replace(/[^a-z]/g, '')},
    el('td', {class: 'mono key', text: v.key}),
    el('td', {class: 'mono' + (v.secret ? ' secret' : ''), text: v.text, title: v.secret ? 'a secret: masked by the server' : ''}),
    el('td', {class: 'layer', text: v.layer + (v.name ? ' ' + v.name : '')}),
    el('td', {class: 'mono dim file', text: v.file + (v.line ? ':' + v.line : '')}))));
}

// The editor: a textarea with a gutter of line numbers; a problem's line
// is marked in the gutter and listed below.

let problemLines = new Map();

function updateGutter() {
  const ta = $('#editor');
  const n = ta.value.split('\n').length;
  const g = $('#gutter');
  const lines = [];
  for (let i = 1; i <= n; i++) {
    const msg = problemLines.get(i);
    lines.push(el('div', {class: msg ? 'ln bad' : 'ln', 'data-line': String(i), title: msg || '', text: String(i)}));
  }
  g.replaceChildren(...lines);
  g.scrollTop = ta.scrollTop;
}

function clearProblems() {
  problemLines = new Map();
  $('#problems').replaceChildren();
  updateGutter();
}

function showProblems(problems, file) {
  problemLines = new Map();
  const list = $('#problems');
  list.replaceChildren();
  for (const p of problems) {
    const mine = p.file === file;
    if (mine && p.line) problemLines.set(p.line, (problemLines.has(p.line) ? problemLines.get(p.line) + '\n' : '') + p.message);
    const label = mine && p.line ? `line ${p.line}, column ${p.col}` : (where(p).replace(/: $/, '') || 'configuration');
    list.append(el('li', {'data-line': mine && p.line ? String(p.line) : '', onclick: () => mine && p.line && gotoLine(p.line, p.col)},
      el('span', {class: 'where', text: label}), ' ', el('span', {text: p.message})));
  }
  updateGutter();
}

function gotoLine(line, col) {
  const ta = $('#editor');
  const lines = ta.value.split('\n');
  let off = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) off += lines[i].length + 1;
  off += Math.max(0, (col || 1) - 1);
  ta.focus();
  ta.setSelectionRange(off, off);
  const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
  ta.scrollTop = Math.max(0, (line - 5) * lh);
}

function setMsg(sel, text, kind) {
  const m = $(sel);
  m.textContent = text;
  m.className = 'msg' + (kind ? ' ' + kind : '');
}

async function validateEditor() {
  const q = `?agent=${encodeURIComponent(agent.id)}`;
  try {
    const {data} = await api('POST', '/api/v1/execution/validate' + q, {body: $('#editor').value, type: 'application/toml'});
    clearProblems();
    return {ok: true, warnings: data.warnings};
  } catch (e) {
    if (e.status === 422 && e.body.problems) {
      showProblems(e.body.problems, e.body.file);
      return {ok: false, count: e.body.problems.length};
    }
    throw e;
  }
}

async function onValidate() {
  try {
    const v = await validateEditor();
    if (v.ok) setMsg('#editor-msg', 'Valid.' + (v.warnings.length ? ' ' + v.warnings.length + ' warning(s).' : ''), 'good');
    else setMsg('#editor-msg', `${v.count} problem${v.count > 1 ? 's' : ''}: nothing was saved.`, 'bad');
  } catch (e) {
    setMsg('#editor-msg', e.message, 'bad');
  }
}

// Save validates first; the server validates again and writes only a
// valid file (the previous one is kept as agent.toml.bak).
async function onSave() {
  try {
    const v = await validateEditor();
    if (!v.ok) {
      setMsg('#editor-msg', `Not saved: ${v.count} problem${v.count > 1 ? 's' : ''}.`, 'bad');
      return;
    }
    const {data} = await api('PUT', `/api/v1/execution/agents/${encodeURIComponent(agent.id)}/config`,
      {body: $('#editor').value, type: 'application/toml', headers: {'If-Match': '"' + agent.etag + '"'}});
    agent.etag = data.sha256;
    setMsg('#editor-msg', `Saved ${data.file} (previous version in ${data.backup}). It applies when vial serve next loads the agent.`, 'good');
    await showResolved(agent.id);
    await loadConfigLists();
    $(`#agents li[data-id="${CSS.escape(agent.id)}"]`)?.classList.add('selected');
  } catch (e) {
    if (e.status === 422 && e.body.problems) {
      showProblems(e.body.problems, $('#agent-file').textContent);
      setMsg('#editor-msg', 'Not saved: ' + e.message, 'bad');
    } else {
      setMsg('#editor-msg', 'Not saved: ' + e.message, 'bad');
    }
  }
}

async function onPreview() {
  const tbody = $('#changes tbody');
  try {
    const {data} = await api('POST', `/api/v1/execution/agents/${encodeURIComponent(agent.id)}/preview`,
      {body: $('#overrides').value, type: 'application/json'});
    $('#changes').hidden = false;
    tbody.replaceChildren(...data.changes.map(c => el('tr', {'data-key': c.key},
      el('td', {class: 'mono', text: c.key}),
      el('td', {class: 'mono dim', text: c.from === undefined || c.from === null ? '(not set)' : JSON.stringify(c.from)}),
      el('td', {class: 'mono', text: JSON.stringify(c.to)}))));
    setMsg('#preview-msg', data.changes.length + ' value(s) would change. Nothing was started or saved.', 'good');
  } catch (e) {
    $('#changes').hidden = true;
    const probs = (e.body && e.body.problems) ? ': ' + e.body.problems.map(p => p.message).join('; ') : '';
    setMsg('#preview-msg', e.message + probs, 'bad');
  }
}

async function openTemplate(name) {
  showView('template-view');
  $(`#templates li[data-name="${CSS.escape(name)}"]`)?.classList.add('selected');
  $('#template-title').textContent = name;
  try {
    const t = (await api('GET', `/api/v1/execution/templates/${encodeURIComponent(name)}`)).data;
    $('#template-file').textContent = t.file;
    $('#template-desc').textContent = t.description || '';
    $('#template-toml').textContent = t.toml || '(built into vial; vial config init writes it out)';
    fillValues($('#template-resolved tbody'), t.resolved.values);
  } catch (e) {
    $('#template-toml').textContent = e.message;
  }
}

async function openCatalogue(kind) {
  showView('catalogue-view');
  const thead = $('#catalogue thead'), tbody = $('#catalogue tbody');
  try {
    if (kind === 'tools') {
      $('#catalogue-title').textContent = 'Tools (system defaults)';
      const {data} = await api('GET', '/api/v1/execution/tools');
      thead.replaceChildren(el('tr', {}, ...['tool', 'category', 'enabled', 'confirmation', 'implemented', 'description'].map(h => el('th', {text: h}))));
      tbody.replaceChildren(...data.tools.map(t => el('tr', {'data-name': t.name},
        el('td', {class: 'mono', text: t.name + (t.aliases.length ? ' (' + t.aliases.join(', ') + ')' : '')}),
        el('td', {text: t.category}), el('td', {text: t.enabled ? 'yes' : 'no'}),
        el('td', {text: t.confirmation_required ? 'asks a person' : 'no'}),
        el('td', {text: t.implemented ? 'yes' : 'no'}), el('td', {text: t.description}))));
    } else {
      $('#catalogue-title').textContent = 'MCP servers (system defaults)';
      const {data} = await api('GET', '/api/v1/execution/mcp/servers');
      thead.replaceChildren(el('tr', {}, ...['server', 'transport', 'enabled', 'url', 'api key', 'from'].map(h => el('th', {text: h}))));
      tbody.replaceChildren(...data.servers.map(s => el('tr', {'data-name': s.name},
        el('td', {class: 'mono', text: s.name}), el('td', {text: s.transport}), el('td', {text: s.enabled ? 'yes' : 'no'}),
        el('td', {class: 'mono', text: s.url}),
        el('td', {text: s.api_key_env ? s.api_key_env + (s.api_key_set ? ' (set)' : ' (not set)') : '—'}),
        el('td', {class: 'mono dim', text: s.from}))));
    }
  } catch (e) {
    tbody.replaceChildren(el('tr', {}, el('td', {class: 'bad', text: e.message})));
  }
}

// ---- live: approvals, contexts, metrics, audit ------------------------------

// reveal shows text with every invisible or direction-changing character
// as a visible marker: a model writes the code a person approves, and
// must not be able to hide part of it (Trojan Source, CVE-2021-42574).
const HIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb]/g;

function reveal(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(HIDDEN)) {
    if (m.index > last) frag.append(text.slice(last, m.index));
    const cp = m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, '0');
    frag.append(el('span', {class: 'ctl', text: '⟨U+' + cp + '⟩'}));
    last = m.index + m[0].length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}

function ago(t) {
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}

function left(t) {
  const s = Math.round((new Date(t).getTime() - Date.now()) / 1000);
  if (s <= 0) return 'expired';
  if (s < 120) return s + ' s left';
  return Math.round(s / 60) + ' min left';
}

async function refreshApprovals() {
  if (!status || !status.features.approvals) {
    $('#approvals-empty').textContent = 'Approvals are not available on this server.';
    return;
  }
  const {data} = await api('GET', '/api/v1/approvals');
  const n = data.approvals.length;
  const badge = $('#approval-count');
  badge.hidden = n === 0;
  badge.textContent = String(n);
  if (currentTab !== 'live') return;
  $('#approvals-empty').hidden = n > 0;
  const box = $('#approvals');
  const known = new Set(data.approvals.map(a => a.id));
  for (const card of $$('.approval', box)) if (!known.has(card.dataset.id)) card.remove();
  for (const a of data.approvals) {
    let card = $(`.approval[data-id="${CSS.escape(a.id)}"]`, box);
    if (card) {
      $('.expires', card).textContent = left(a.expires);
      continue;
    }
    card = el('div', {class: 'approval', 'data-id': a.id},
      el('div', {class: 'row between'},
        el('strong', {class: 'mono', text: a.tool}),
        el('span', {class: 'dim small', text: `session ${a.session}${a.client ? ' · ' + a.client : ''}${a.agent ? ' · agent ' + a.agent : ''} · asked ${ago(a.created)} · `},
          el('span', {class: 'expires', text: left(a.expires)}))),
      el('pre', {class: 'mono code summary'}, reveal(a.summary)),
      el('div', {class: 'row'},
        el('button', {type: 'button', class: 'primary approve', text: 'Approve', onclick: () => answer(a.id, true, card)}),
        el('button', {type: 'button', class: 'danger deny', text: 'Deny', onclick: () => answer(a.id, false, card)}),
        el('span', {class: 'msg'})));
    box.append(card);
  }
}

async function answer(id, approve, card) {
  for (const b of $$('button', card)) b.disabled = true;
  try {
    await api('POST', `/api/v1/approvals/${encodeURIComponent(id)}/${approve ? 'approve' : 'deny'}`);
    card.classList.add(approve ? 'approved' : 'denied');
    const badge = $('#approval-count');
    const n = Math.max(0, Number(badge.textContent) - 1);
    badge.textContent = String(n);
    badge.hidden = n === 0;
    $('.msg', card).textContent = approve ? 'Approved: it runs now.' : 'Denied.';
    setTimeout(refreshApprovals, 1500);
  } catch (e) {
    $('.msg', card).textContent = e.message;
    for (const b of $$('button', card)) b.disabled = false;
  }
}

async function refreshContexts() {
  if (!status.features.contexts) return;
  const {data} = await api('GET', '/api/v1/contexts');
  $('#contexts-empty').hidden = data.contexts.length > 0;
  $('#contexts tbody').replaceChildren(...data.contexts.map(c => el('tr', {'data-id': c.id},
    el('td', {class: 'mono', text: c.id + (c.name ? ' (' + c.name + ')' : '') + (c.default ? ' · default' : '')}),
    el('td', {class: 'mono small', text: c.session}),
    el('td', {text: c.language}),
    el('td', {text: c.environment || '(agent\'s own)'}),
    el('td', {class: c.dead ? 'bad' : '', text: c.dead ? 'dead' : c.busy ? 'busy' : 'idle'}),
    el('td', {text: ago(c.created)}),
    el('td', {text: ago(c.last_used)}),
    el('td', {}, el('button', {type: 'button', class: 'danger stop', text: 'Stop', onclick: e => stopContext(c.id, e.target)})))));
}

async function stopContext(id, btn) {
  btn.disabled = true;
  try {
    await api('DELETE', `/api/v1/contexts/${encodeURIComponent(id)}`);
  } catch (e) {
    btn.disabled = false;
    btn.title = e.message;
  }
  await refreshContexts();
}

// parseMetrics reads the Prometheus text format: "name{labels} value".
function parseMetrics(text) {
  const help = {};
  const rows = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7);
      const i = rest.indexOf(' ');
      help[rest.slice(0, i)] = rest.slice(i + 1);
      continue;
    }
    if (!line.trim() || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m) rows.push({name: m[1], labels: (m[2] || '').slice(1, -1), value: m[3]});
  }
  return rows.map(r => Object.assign(r, {help: help[r.name] || help[r.name.replace(/_(bucket|sum|count|total)$/, '')] || ''}));
}

async function refreshMetrics() {
  if (!status.features.metrics) {
    $('#metrics-msg').textContent = 'Metrics are not available on this server.';
    return;
  }
  const res = await api('GET', '/api/v1/metrics', {raw: true});
  const rows = parseMetrics(await res.text()).filter(r => !r.name.endsWith('_bucket'));
  $('#metrics tbody').replaceChildren(...rows.map(r => el('tr', {'data-name': r.name, title: r.help},
    el('td', {class: 'mono', text: r.name}), el('td', {class: 'mono dim small', text: r.labels}), el('td', {class: 'mono num', text: r.value}))));
  $('#metrics-msg').textContent = '';
}

async function refreshAudit() {
  if (!status.features.audit) {
    $('#audit-msg').textContent = 'The audit log is not available on this server.';
    return;
  }
  const {data} = await api('GET', '/api/v1/audit?n=50');
  $('#audit').replaceChildren(...data.entries.slice().reverse().map(e => {
    if (typeof e === 'string') return el('li', {text: e});
    const parts = [e.time ? new Date(e.time).toLocaleTimeString() : '', e.kind, e.tool, e.decision, e.outcome, e.session, e.context, e.answered_by]
      .filter(Boolean);
    return el('li', {text: parts.join(' · '), title: JSON.stringify(e)});
  }));
}

async function refreshLive() {
  const jobs = [refreshApprovals(), refreshContexts(), refreshMetrics(), refreshAudit()];
  for (const r of await Promise.allSettled(jobs)) if (r.status === 'rejected' && r.reason.status !== 401) console.warn(r.reason);
}

let timer = null;

function startPolling() {
  stopPolling();
  const tick = async () => {
    if (!token()) return;
    if (!document.hidden) {
      if (currentTab === 'live') await refreshLive();
      else await refreshApprovals().catch(() => {});
    }
    timer = setTimeout(tick, 2000);
  };
  timer = setTimeout(tick, 500);
}

function stopPolling() {
  if (timer) clearTimeout(timer);
  timer = null;
}

// ---- images ----------------------------------------------------------------

function size(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + u[i];
}

let build = null;

async function refreshImages() {
  if (!status.features.images) return;
  const {data} = await api('GET', '/api/v1/images');
  $('#images tbody').replaceChildren(...data.images.map(i => el('tr', {},
    el('td', {class: 'mono', text: i.name || '<none>'}), el('td', {class: 'mono dim small', text: i.digest.slice(0, 19)}),
    el('td', {class: 'num', text: size(i.size)}), el('td', {text: new Date(i.created).toLocaleString()}),
    el('td', {class: 'dim small', text: i.source || ''}))));
  const sel = $('#build-recipe');
  if (!sel.options.length) {
    sel.append(el('option', {value: '', text: '—'}));
    for (const r of data.recipes) sel.append(el('option', {value: r, text: r}));
  }
  if (data.last_build && data.last_build.state === 'running' && !build) follow(data.last_build.id);
}

async function onBuild(ev) {
  ev.preventDefault();
  const req = {};
  if ($('#build-recipe').value) req.recipe = $('#build-recipe').value;
  if ($('#build-env').value) req.environment = $('#build-env').value;
  if ($('#build-name').value.trim()) req.name = $('#build-name').value.trim();
  $('#build-log').textContent = '';
  try {
    const {data} = await api('POST', '/api/v1/images/builds', {body: JSON.stringify(req)});
    follow(data.id);
  } catch (e) {
    setMsg('#build-msg', e.message, 'bad');
  }
}

// follow streams a build's progress: server-sent events, read with fetch
// so that the token goes in a header (EventSource cannot send one).
async function follow(id) {
  build = id;
  $('#build-start').disabled = true;
  $('#build-cancel').hidden = false;
  setMsg('#build-msg', 'Building…');
  const log = $('#build-log');
  try {
    const res = await api('GET', `/api/v1/images/builds/${encodeURIComponent(id)}/events`, {raw: true});
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
        }
        const text = data.join('\n');
        if (event === 'progress' || event === 'skipped') {
          log.append(text + '\n');
          log.scrollTop = log.scrollHeight;
        } else if (event === 'end') {
          const st = JSON.parse(text);
          if (st.state === 'succeeded') setMsg('#build-msg', `Built ${st.image.name} (${st.image.digest.slice(0, 19)}).`, 'good');
          else setMsg('#build-msg', `Build ${st.state}: ${st.error || ''}`, 'bad');
        }
      }
    }
  } catch (e) {
    setMsg('#build-msg', e.message, 'bad');
  }
  build = null;
  $('#build-start').disabled = false;
  $('#build-cancel').hidden = true;
  refreshImages().catch(() => {});
}

async function onCancelBuild() {
  if (!build) return;
  try { await api('DELETE', `/api/v1/images/builds/${encodeURIComponent(build)}`); } catch (e) { setMsg('#build-msg', e.message, 'bad'); }
}

// ---- start -----------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('#login-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const tok = $('#token').value.trim();
    if (tok) signIn(tok);
  });
  $('#logout').addEventListener('click', () => signOut('Signed out.'));
  for (const b of $$('#tabs .tab')) b.addEventListener('click', () => showTab(b.dataset.tab));
  const ta = $('#editor');
  ta.addEventListener('input', () => { if (problemLines.size) { problemLines = new Map(); } updateGutter(); });
  ta.addEventListener('scroll', () => { $('#gutter').scrollTop = ta.scrollTop; });
  ta.addEventListener('keydown', e => {
    if (e.key === 'Tab') { e.preventDefault(); document.execCommand('insertText', false, '    '); }
    if ((e.ctrlKey || e.metaKey) && e.key === 's') { e.preventDefault(); onSave(); }
  });
  $('#validate').addEventListener('click', onValidate);
  $('#save').addEventListener('click', onSave);
  $('#reload').addEventListener('click', () => agent && openAgent(agent.id));
  $('#preview').addEventListener('click', onPreview);
  $('#show-tools').addEventListener('click', () => openCatalogue('tools'));
  $('#show-servers').addEventListener('click', () => openCatalogue('servers'));
  $('#build-form').addEventListener('submit', onBuild);
  $('#build-cancel').addEventListener('click', onCancelBuild);
  if (token()) signIn(token());
  else $('#token').focus();
});
