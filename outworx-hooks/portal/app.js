// The subscriber portal: one application's endpoints, their secrets, deliveries, replay,
// recovery and a test event, over the Svix-compatible API with an app-scoped token.
//
// The token arrives once in the URL's fragment (`#token=..`, never sent to a server), is
// kept in this tab's sessionStorage and taken out of the address bar at once. Everything
// the page shows from the API is set as text, never as markup. When the token is about to
// expire, the page asks the page embedding it (`window.parent`) for a new one with
// `postMessage({type: "outworx-portal:token-expiring"})`; the parent answers with
// `{type: "outworx-portal:token", token}`, fetched from its own backend. Signing out clears
// this tab only: `expire-all` (the sender's backend) revokes the application's tokens.
'use strict';

const API = new URL('../api/v1/', location.href).href;
const KEY = 'outworx-portal-token';
const $ = (s) => document.querySelector(s);

let token = null;
let claims = null;
let current = null; // the endpoint shown
let types = []; // the namespace's event types
let logIterator = null;
let expiryTimer = null;

// ---- the token ----

function decode(t) {
  try {
    const body = t.slice(4).split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
    const c = JSON.parse(atob(body));
    return typeof c.app === 'string' && typeof c.exp === 'number' ? c : null;
  } catch (_) {
    return null;
  }
}

// The page embedding this one, when the browser names it (Chromium, Safari): messages go
// only to it, and only its messages are read.
const parentOrigin = location.ancestorOrigins && location.ancestorOrigins.length
  ? location.ancestorOrigins[0] : null;
let lastAsk = 0;

function useToken(t) {
  const c = typeof t === 'string' && t.startsWith('opt_') ? decode(t) : null;
  if (!c) return false;
  token = t;
  claims = c;
  sessionStorage.setItem(KEY, t);
  clearTimeout(expiryTimer);
  // Ask for a new one a quarter of its life (at most a minute) before it ends, measured
  // from now: a clock set wrong moves the time, not the margin.
  const life = typeof c.iat === 'number' && c.exp > c.iat ? c.exp - c.iat : 3600000;
  const margin = Math.min(60000, life / 4);
  const left = Math.max(0, Math.min(c.exp - Date.now(), life) - margin);
  expiryTimer = setTimeout(askForToken, Math.min(left, 2147483000));
  return true;
}

function askForToken() {
  // At most one request every 10 s, whatever asks (the timer, a 401 on each of many calls).
  if (window.parent === window || !claims) return;
  const since = Date.now() - lastAsk;
  if (since < 10000) {
    // Asked a moment ago: ask again once the 10 s have passed (unless a token came).
    clearTimeout(expiryTimer);
    expiryTimer = setTimeout(askForToken, 10000 - since);
    return;
  }
  lastAsk = Date.now();
  window.parent.postMessage({ type: 'outworx-portal:token-expiring', exp: claims.exp }, parentOrigin || '*');
}

window.addEventListener('message', (ev) => {
  // Only the page embedding this one (which `frame-ancestors` allows) hands tokens in; the
  // API checks every token anyway.
  if (ev.source !== window.parent || window.parent === window) return;
  if (parentOrigin && ev.origin !== parentOrigin) return;
  const d = ev.data;
  if (d && d.type === 'outworx-portal:token') {
    const signedOut = token === null;
    if (!useToken(d.token)) return;
    say('Session renewed.');
    // The page as it is keeps working with the new token; a signed-out one starts again.
    if (signedOut) start();
  }
});

function signOut() {
  token = null;
  claims = null;
  current = null;
  clearTimeout(expiryTimer);
  sessionStorage.removeItem(KEY);
  for (const tb of document.querySelectorAll('tbody')) tb.replaceChildren();
  for (const id of ['#secret', '#new-types', '#ep-types']) $(id).replaceChildren();
  $('#portal').hidden = true;
  $('#signout').hidden = true;
  $('#signed-out').hidden = false;
  $('#title').textContent = 'Webhooks';
  say('');
  if (window.parent !== window) window.parent.postMessage({ type: 'outworx-portal:signed-out' }, parentOrigin || '*');
}

// ---- the API ----

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && (typeof body.detail === 'string' ? body.detail
      : Array.isArray(body.detail) && body.detail[0] ? body.detail[0].msg : '');
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { authorization: `Bearer ${token}` }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (r.status === 401) {
    say('Your session has expired.', true);
    askForToken();
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

const app = () => `app/${encodeURIComponent(claims.app)}`;

function say(text, error) {
  const s = $('#status');
  s.textContent = text;
  s.classList.toggle('error', Boolean(error));
}

function fail(e) {
  say(e instanceof Error ? e.message : String(e), true);
}

// ---- building rows (text only) ----

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text == null ? '' : String(text);
  if (cls) td.className = cls;
  return td;
}

function button(label, onClick, cls) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

function when(iso) {
  const d = new Date(iso);
  return isNaN(d) ? '' : d.toLocaleString();
}

function typeBoxes(container, chosen) {
  container.replaceChildren();
  for (const t of types) {
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = t.name;
    box.checked = Boolean(chosen && chosen.includes(t.name));
    label.append(box, ` ${t.name}`);
    if (t.deprecated) label.append(' (deprecated)');
    container.append(label);
  }
}

function chosenTypes(container) {
  const picked = [...container.querySelectorAll('input:checked')].map((b) => b.value);
  return picked.length ? picked : null;
}

// ---- the list ----

async function loadTypes() {
  const all = [];
  let it = null;
  for (let i = 0; i < 20; i++) {
    const page = await api('GET', `event-type?limit=250${it ? `&iterator=${encodeURIComponent(it)}` : ''}`);
    all.push(...page.data.filter((t) => !t.archived));
    if (page.done) break;
    it = page.iterator;
  }
  types = all;
}

async function showList() {
  current = null;
  $('#endpoint').hidden = true;
  $('#list').hidden = false;
  const page = await api('GET', `${app()}/endpoint?limit=250`);
  const tb = $('#endpoints tbody');
  tb.replaceChildren();
  for (const ep of page.data) {
    const tr = document.createElement('tr');
    tr.dataset.id = ep.id;
    const delivered = cell('…');
    const failed = cell('…');
    tr.append(
      cell(ep.url),
      cell(ep.description),
      cell(ep.disabled ? 'disabled' : 'enabled', ep.disabled ? 'state-off' : 'state-on'),
      delivered,
      failed,
      (() => { const td = document.createElement('td'); td.append(button('Open', () => open(ep.id).catch(fail), 'link open')); return td; })(),
    );
    tb.append(tr);
    api('GET', `${app()}/endpoint/${encodeURIComponent(ep.id)}/stats`).then((s) => {
      delivered.textContent = String(s.success);
      failed.textContent = String(s.fail);
    }).catch(() => { delivered.textContent = '?'; failed.textContent = '?'; });
  }
  typeBoxes($('#new-types'), null);
}

async function create(ev) {
  ev.preventDefault();
  const body = { url: $('#new-url').value.trim(), description: $('#new-description').value };
  const picked = chosenTypes($('#new-types'));
  if (picked) body.eventTypes = picked;
  try {
    const ep = await api('POST', `${app()}/endpoint`, body);
    $('#new-form').reset();
    $('#add').open = false;
    say('Endpoint added.');
    await open(ep.id);
  } catch (e) {
    fail(e);
  }
}

// ---- one endpoint ----

async function open(id) {
  const ep = await api('GET', `${app()}/endpoint/${encodeURIComponent(id)}`);
  current = ep;
  $('#list').hidden = true;
  $('#endpoint').hidden = false;
  $('#ep-title').textContent = ep.url;
  $('#ep-url').value = ep.url;
  $('#ep-description').value = ep.description || '';
  $('#ep-toggle').textContent = ep.disabled ? 'Enable' : 'Disable';
  typeBoxes($('#ep-types'), ep.eventTypes || ep.filterTypes);
  hideSecret();
  $('#attempts').hidden = true;
  logIterator = null;
  $('#log tbody').replaceChildren();
  await loadLog();
}

const epPath = () => `${app()}/endpoint/${encodeURIComponent(current.id)}`;

async function save(ev) {
  ev.preventDefault();
  try {
    current = await api('PATCH', epPath(), {
      url: $('#ep-url').value.trim(),
      description: $('#ep-description').value,
      eventTypes: chosenTypes($('#ep-types')),
    });
    $('#ep-title').textContent = current.url;
    say('Saved.');
  } catch (e) {
    fail(e);
  }
}

async function toggle() {
  try {
    current = await api('PATCH', epPath(), { disabled: !current.disabled });
    $('#ep-toggle').textContent = current.disabled ? 'Enable' : 'Disable';
    say(current.disabled ? 'Disabled: nothing is sent to it.' : 'Enabled.');
  } catch (e) {
    fail(e);
  }
}

async function remove() {
  if (!confirm('Delete this endpoint? Nothing more is sent to it.')) return;
  try {
    await api('DELETE', epPath());
    say('Endpoint deleted.');
    await showList();
  } catch (e) {
    fail(e);
  }
}

function hideSecret() {
  $('#secret').textContent = '';
  $('#secret').hidden = true;
  $('#reveal').textContent = 'Reveal';
}

async function reveal() {
  if (!$('#secret').hidden) return hideSecret();
  try {
    const s = await api('GET', `${epPath()}/secret`);
    $('#secret').textContent = s.key;
    $('#secret').hidden = false;
    $('#reveal').textContent = 'Hide';
  } catch (e) {
    fail(e);
  }
}

async function rotate() {
  const grace = Number($('#grace').value);
  try {
    const s = await api('POST', `${epPath()}/secret/rotate`, { gracePeriodSeconds: grace });
    $('#secret').textContent = s && s.key ? s.key : '';
    $('#secret').hidden = false;
    $('#reveal').textContent = 'Hide';
    say(`Secret rotated; the old one keeps working for ${grace} s.`);
  } catch (e) {
    fail(e);
  }
}

async function testEvent() {
  try {
    const m = await api('POST', `${epPath()}/send-example`, { eventType: 'webhook.test' });
    say(`Test event ${m.id} queued.`);
    setTimeout(() => refreshLog().catch(fail), 1500);
  } catch (e) {
    fail(e);
  }
}

async function recover() {
  const v = $('#recover-since').value;
  if (!v) return say('Pick a time to recover from.', true);
  try {
    const r = await api('POST', `${epPath()}/recover`, { since: new Date(v).toISOString() });
    const n = r.data && typeof r.data.messagesSent === 'number' ? r.data.messagesSent : 0;
    say(`${n} failed message(s) queued again.`);
    setTimeout(() => refreshLog().catch(fail), 1500);
  } catch (e) {
    fail(e);
  }
}

async function refreshLog() {
  logIterator = null;
  $('#log tbody').replaceChildren();
  await loadLog();
}

async function loadLog() {
  const page = await api('GET', `${epPath()}/msg?limit=20&with_content=false${logIterator ? `&iterator=${encodeURIComponent(logIterator)}` : ''}`);
  const tb = $('#log tbody');
  for (const m of page.data) {
    const tr = document.createElement('tr');
    tr.dataset.id = m.id;
    const actions = document.createElement('td');
    actions.append(
      button('Attempts', () => attempts(m.id).catch(fail), 'link attempts'),
      button('Replay', () => replay(m.id), 'link replay'),
    );
    tr.append(cell(when(m.timestamp)), cell(m.eventType), cell(m.id), cell(m.statusText, `s-${m.statusText}`), actions);
    tb.append(tr);
  }
  logIterator = page.done ? null : page.iterator;
  $('#more').hidden = !logIterator;
}

async function attempts(msgId) {
  const page = await api('GET', `${app()}/attempt/msg/${encodeURIComponent(msgId)}?endpoint_id=${encodeURIComponent(current.id)}&limit=50`);
  $('#attempts-of').textContent = msgId;
  const tb = $('#attempts tbody');
  tb.replaceChildren();
  for (const a of page.data) {
    const tr = document.createElement('tr');
    const answer = document.createElement('td');
    const pre = document.createElement('pre');
    pre.textContent = a.response;
    answer.append(pre);
    tr.append(cell(when(a.timestamp)), cell(a.responseStatusCode || 'no answer', `s-${a.statusText}`), cell(`${a.responseDurationMs} ms`), answer);
    tb.append(tr);
  }
  $('#attempts').hidden = false;
}

async function replay(msgId) {
  try {
    await api('POST', `${app()}/msg/${encodeURIComponent(msgId)}/endpoint/${encodeURIComponent(current.id)}/resend`);
    say(`Message ${msgId} queued again.`);
    setTimeout(() => refreshLog().catch(fail), 1500);
  } catch (e) {
    fail(e);
  }
}

// ---- theme and start ----

function theme() {
  const q = new URLSearchParams(location.search);
  const color = q.get('primaryColor');
  if (color && /^#?[0-9a-fA-F]{3,8}$/.test(color)) {
    document.documentElement.style.setProperty('--primary', color.startsWith('#') ? color : `#${color}`);
  }
  const font = q.get('fontFamily');
  if (font && /^[A-Za-z0-9 ,'"-]{1,100}$/.test(font)) {
    document.documentElement.style.setProperty('--font', `${font}, system-ui, sans-serif`);
  }
  if (q.get('darkMode') === 'true') document.documentElement.classList.add('dark');
}

async function start() {
  $('#signed-out').hidden = true;
  $('#portal').hidden = false;
  $('#signout').hidden = false;
  try {
    const a = await api('GET', app());
    $('#title').textContent = `Webhooks: ${a.name}`;
    await loadTypes();
    await (current ? open(current.id) : showList());
  } catch (e) {
    fail(e);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  theme();
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromUrl) {
    // Out of the address bar (and the history) before anything else.
    history.replaceState(null, '', location.pathname + location.search);
  }
  $('#new-form').addEventListener('submit', create);
  $('#ep-form').addEventListener('submit', save);
  $('#ep-toggle').addEventListener('click', toggle);
  $('#ep-delete').addEventListener('click', remove);
  $('#back').addEventListener('click', () => showList().catch(fail));
  $('#reveal').addEventListener('click', reveal);
  $('#rotate').addEventListener('click', rotate);
  $('#test-event').addEventListener('click', testEvent);
  $('#recover').addEventListener('click', recover);
  $('#more').addEventListener('click', () => loadLog().catch(fail));
  $('#signout').addEventListener('click', signOut);
  if (useToken(fromUrl) || useToken(sessionStorage.getItem(KEY))) {
    start();
  } else {
    signOut();
  }
});
