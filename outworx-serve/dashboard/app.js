// The Outworx dashboard: reads /api/stats and /api/events with the project's API key.
// Event data is untrusted (it is whatever a webhook sender put in a request): it is only ever
// set as text (textContent), never parsed as markup.
'use strict';

(() => {
  const KEY_STORE = 'outworx.apiKey';
  const KEY_FORMAT = /^ohk_[0-9a-f]{32}$/;
  const PAGE = 50;
  const LIVE_MS = 5000;

  const $ = (sel) => document.querySelector(sel);
  const state = {
    key: sessionStorage.getItem(KEY_STORE) || '',
    rows: [],
    nextBefore: null,
    paged: false,
    shown: null, // the row ids on screen
    seq: 0,
    timer: null,
    range: null, // a bucket of the chart the table is limited to
  };

  // --- the API --------------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, params, key = state.key) {
    // Relative to the page, so the dashboard also works behind a path prefix.
    const url = new URL('../api/' + path, location.href);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== '' && v !== null && v !== undefined) url.searchParams.set(k, v);
    }
    const res = await fetch(url, { headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' });
    if (res.status === 401) throw new Unauthorized('The server did not accept this API key.');
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      // Not JSON: the status says enough.
    }
    if (!res.ok) throw new Error((body && body.error) || `The server answered ${res.status}.`);
    return body;
  }

  // --- formatting -----------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, '0');

  function when(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso || '—');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function bytes(n) {
    if (typeof n !== 'number') return '—';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function signature(e) {
    if (e.signature_valid === true) return ['valid', 'ok'];
    if (e.signature_valid === false) {
      return [e.signature_failure_reason ? `invalid: ${e.signature_failure_reason}` : 'invalid', 'bad'];
    }
    return ['not checked', 'muted'];
  }

  function processing(e) {
    switch (e.processing_status) {
      case 'completed': return ['completed', 'ok'];
      case 'failed': return ['failed', 'bad'];
      case 'silent_drop': return ['silent drop', 'warn'];
      default: return ['—', 'muted'];
    }
  }

  // --- the chart ------------------------------------------------------------------------

  // Outcomes bottom up; a name the server sends that is not here is not drawn.
  const OUTCOMES = ['completed', 'queued', 'duplicate', 'ignored', 'silent_drop', 'failed', 'signature_failure', 'unknown'];
  const SVG = 'http://www.w3.org/2000/svg';
  const W = 1000;

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // Draws the series: a stacked bar per bucket (a click filters the table to it) and the
  // p50/p95 latency lines. Every value is a number from the API, set as an attribute or text.
  function renderSeries(series) {
    const chart = $('#chart');
    const buckets = Array.isArray(series.buckets) ? series.buckets : [];
    const total = (b) => OUTCOMES.reduce((sum, o) => sum + (Number((b.counts || {})[o]) || 0), 0);
    const max = Math.max(1, ...buckets.map(total));
    const w = W / Math.max(1, buckets.length);
    const H = 100;
    const bars = buckets.map((b, i) => {
      const start = Number(b.start_ms);
      const g = svg('g', { class: 'bar', tabindex: 0, 'data-start': start, 'data-total': total(b) });
      g.append(svg('rect', { class: 'hit', x: i * w, y: 0, width: w, height: H }));
      let y = H;
      for (const o of OUTCOMES) {
        const n = Number((b.counts || {})[o]) || 0;
        if (!n) continue;
        const h = (n / max) * H;
        y -= h;
        g.append(svg('rect', { class: 'o-' + o, x: i * w + w * 0.1, y, width: w * 0.8, height: h, 'data-outcome': o, 'data-count': n }));
      }
      const title = svg('title');
      const lat = typeof b.p50_ms === 'number' ? `, p50 ${b.p50_ms} ms, p95 ${b.p95_ms} ms` : '';
      title.textContent = `${when(start)}: ${total(b)} deliveries${lat}`;
      g.append(title);
      const pick = () => pickRange(start, start + Number(series.bucket_ms), g);
      g.addEventListener('click', pick);
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') pick();
      });
      return g;
    });
    chart.setAttribute('viewBox', `0 0 ${W} ${H}`);
    chart.dataset.since = String(series.since_ms);
    chart.dataset.until = String(series.until_ms);
    chart.dataset.bucket = String(series.bucket_ms);
    chart.replaceChildren(...bars);

    const latency = $('#latency');
    const top = Math.max(1, ...buckets.map((b) => Number(b.p95_ms) || 0));
    const line = (key, cls) => svg('polyline', {
      class: cls,
      points: buckets
        .map((b, i) => (typeof b[key] === 'number' ? `${i * w + w / 2},${40 - (b[key] / top) * 38}` : null))
        .filter(Boolean)
        .join(' '),
    });
    latency.setAttribute('viewBox', `0 0 ${W} 40`);
    latency.replaceChildren(line('p50_ms', 'l-p50'), line('p95_ms', 'l-p95'));
  }

  // The table shows one bucket of the chart until the range is cleared.
  function pickRange(since, until, bar) {
    state.range = { since: new Date(since).toISOString(), until: new Date(until).toISOString() };
    for (const g of document.querySelectorAll('#chart .picked')) g.classList.remove('picked');
    if (bar) bar.classList.add('picked');
    $('#range').textContent = `Showing ${when(since)} to ${when(until)}`;
    $('#range').hidden = false;
    $('#range-clear').hidden = false;
    load();
  }

  function clearRange() {
    state.range = null;
    for (const g of document.querySelectorAll('#chart .picked')) g.classList.remove('picked');
    $('#range').hidden = true;
    $('#range-clear').hidden = true;
  }

  const statusClass = (code) => (code >= 500 ? 'bad' : code >= 400 ? 'warn' : code >= 200 && code < 300 ? 'ok' : 'muted');
  const isDuplicate = (e) => Boolean(e.metadata && e.metadata.duplicate === true);

  // A body as the sender wrote it, or pretty-printed when it is JSON.
  function pretty(v) {
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') return JSON.stringify(v, null, 2);
    try {
      return JSON.stringify(JSON.parse(v), null, 2);
    } catch (_) {
      return v;
    }
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  // --- rendering ------------------------------------------------------------------------

  function setError(where, message) {
    const p = $(where);
    p.textContent = message || '';
  }

  function renderStats(s) {
    const values = {
      total: s.total,
      signature_invalid: s.signature_invalid,
      silent_drop: (s.by_processing_status || {}).silent_drop || 0,
      failed: (s.by_processing_status || {}).failed || 0,
      '5xx': (s.by_status_class || {})['5xx'] || 0,
    };
    for (const node of document.querySelectorAll('[data-stat]')) {
      node.textContent = String(values[node.dataset.stat] || 0);
    }
    // The provider filter offers what the window holds, and keeps a chosen one.
    const select = $('#f-provider');
    const chosen = select.value;
    const names = new Set(Object.keys(s.by_provider || {}));
    if (chosen) names.add(chosen);
    const wanted = ['', ...[...names].sort()];
    // Rebuilt only when the list changes, so a live refresh does not close an open list.
    if ([...select.options].map((o) => o.value).join('\n') === wanted.join('\n')) return;
    const option = (value, label) => {
      const o = el('option', label);
      o.value = value;
      return o;
    };
    select.replaceChildren(...wanted.map((n) => option(n, n || 'all')));
    select.value = chosen;
  }

  function row(item) {
    const e = item.event || {};
    const tr = el('tr');
    tr.tabIndex = 0;
    tr.dataset.id = item.id;
    const time = el('td', when(e.timestamp));
    time.title = e.timestamp || '';
    const http = el('td', e.status_code, statusClass(e.status_code));
    if (isDuplicate(e)) http.append(' ', el('span', 'duplicate', 'tag'));
    const [sig, sigClass] = signature(e);
    const [proc, procClass] = processing(e);
    tr.append(
      time,
      el('td', e.provider),
      el('td', e.event_type || '—', e.event_type ? '' : 'muted'),
      http,
      el('td', sig, sigClass),
      el('td', proc, procClass),
      el('td', typeof e.duration_ms === 'number' ? `${e.duration_ms} ms` : '—', 'num'),
      el('td', bytes(e.payload_size), 'num'),
    );
    tr.addEventListener('click', () => openDetail(item));
    tr.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') openDetail(item);
    });
    return tr;
  }

  function renderRows() {
    state.shown = state.rows.map((r) => r.id).join();
    $('#events tbody').replaceChildren(...state.rows.map(row));
    $('#empty').hidden = state.rows.length > 0;
    $('#older').hidden = state.nextBefore === null;
  }

  function openDetail(item) {
    const e = item.event || {};
    $('#d-title').textContent = `${e.provider || '?'} ${e.event_type || ''}`.trim();
    const [sig] = signature(e);
    const [proc] = processing(e);
    const fields = [
      ['Time', e.timestamp],
      ['Received', new Date(item.received_at).toISOString()],
      ['HTTP status', `${e.status_code}${e.success === false ? ' (not a success)' : ''}${isDuplicate(e) ? ' (duplicate: first response replayed)' : ''}`],
      ['Signature', sig],
      ['Processing', proc],
      ['Processing failure', e.processing_failure_reason],
      ['Marked at', e.processing_marked_at],
      ['Duration', typeof e.duration_ms === 'number' ? `${e.duration_ms} ms` : null],
      ['Payload size', bytes(e.payload_size)],
      ['Source URL', e.source_url],
      ['Error', e.error_message],
    ];
    const dl = $('#d-fields');
    dl.replaceChildren();
    for (const [name, value] of fields) {
      if (value === undefined || value === null || value === '') continue;
      dl.append(el('dt', name), el('dd', value));
    }
    const sections = [
      ['Metadata', e.metadata ? JSON.stringify(e.metadata, null, 2) : null],
      ['Request headers', e.request_headers ? JSON.stringify(e.request_headers, null, 2) : null],
      ['Request body', pretty(e.request_body)],
      ['Response body', pretty(e.response_body)],
      ['Event as reported', JSON.stringify(e, null, 2)],
    ];
    const box = $('#d-sections');
    box.replaceChildren();
    for (const [name, text] of sections) {
      if (text === null) continue;
      box.append(el('h3', name), el('pre', text));
    }
    const dialog = $('#detail');
    if (!dialog.open) dialog.showModal();
  }

  // --- loading --------------------------------------------------------------------------

  function filterParams() {
    const p = {
      provider: $('#f-provider').value,
      signature_valid: $('#f-signature').value,
      processing_status: $('#f-processing').value,
    };
    const seconds = $('#f-window').value;
    if (seconds) p.since = new Date(Date.now() - Number(seconds) * 1000).toISOString();
    if (state.range) {
      p.since = state.range.since;
      p.until = state.range.until;
    }
    const status = $('#f-status').value.trim();
    if (status && !/^[1-5][0-9]{2}$/.test(status)) {
      throw new Error('HTTP status is a three-digit code, such as 200 or 401.');
    }
    p.status = status;
    return p;
  }

  async function load(more = false) {
    const seq = ++state.seq;
    try {
      const params = filterParams();
      // The chart covers the window (all time: the series' longest, a year), not a picked bar.
      const seconds = Number($('#f-window').value) || 365 * 86400;
      const until = Date.now();
      const window = { since: new Date(until - seconds * 1000).toISOString(), until: new Date(until).toISOString() };
      const [stats, page, series] = await Promise.all([
        more ? null : api('stats', { since: params.since, until: params.until }),
        api('events', { ...params, limit: PAGE, before_id: more ? state.nextBefore : '' }),
        // The chart is extra: if its series fails, the table and the counts still show.
        more ? null : api('stats/series', window).catch((err) => (err instanceof Unauthorized ? Promise.reject(err) : null)),
      ]);
      if (seq !== state.seq) return; // a newer load has superseded this one
      if (stats) renderStats(stats);
      if (series && !state.range) renderSeries(series);
      if (!more) state.rows = [];
      state.rows.push(...page.events);
      state.paged = more;
      state.nextBefore = page.events.length === PAGE ? page.next_before_id : null;
      // A refresh that changed nothing leaves the table (and the reader's focus) alone.
      if (state.rows.map((r) => r.id).join() !== state.shown) renderRows();
      setError('#board-error', '');
      document.body.dataset.loaded = String(seq);
    } catch (err) {
      if (seq !== state.seq) return;
      if (err instanceof Unauthorized) signOut(err.message);
      else setError('#board-error', err.message);
    }
  }

  function live() {
    clearInterval(state.timer);
    state.timer = setInterval(() => {
      // Paged views stay as the reader left them; a hidden tab or an open detail waits.
      if (!$('#f-live').checked || state.paged || document.hidden || $('#detail').open) return;
      load();
    }, LIVE_MS);
  }

  // --- sign in / out --------------------------------------------------------------------

  function showBoard() {
    $('#login').hidden = true;
    $('#board').hidden = false;
    $('#signout').hidden = false;
    load();
    live();
  }

  function signOut(message) {
    clearInterval(state.timer);
    state.seq += 1; // an answer still on its way belongs to the old key: drop it
    state.key = '';
    state.rows = [];
    state.shown = null;
    clearRange();
    sessionStorage.removeItem(KEY_STORE);
    $('#filters').reset(); // the next project starts unfiltered
    $('#events tbody').replaceChildren();
    $('#board').hidden = true;
    $('#signout').hidden = true;
    $('#login').hidden = false;
    setError('#login-error', message || '');
    $('#key').value = '';
    $('#key').focus();
  }

  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = $('#key').value.trim();
    if (!KEY_FORMAT.test(key)) {
      setError('#login-error', 'An API key is ohk_ followed by 32 lowercase hex digits.');
      return;
    }
    setError('#login-error', '');
    try {
      await api('stats', {}, key);
    } catch (err) {
      setError('#login-error', err.message);
      return;
    }
    state.key = key;
    sessionStorage.setItem(KEY_STORE, key);
    $('#key').value = '';
    showBoard();
  });

  $('#signout').addEventListener('click', () => signOut(''));
  $('#filters').addEventListener('change', (ev) => {
    if (ev.target.id === 'f-window') clearRange();
    if (ev.target.id !== 'f-live') load();
  });
  $('#filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    load();
  });
  $('#refresh').addEventListener('click', () => load());
  $('#clear').addEventListener('click', () => {
    for (const id of ['#f-provider', '#f-signature', '#f-processing', '#f-status']) $(id).value = '';
    load();
  });
  $('#older').addEventListener('click', () => load(true));
  $('#range-clear').addEventListener('click', () => {
    clearRange();
    load();
  });
  for (const card of document.querySelectorAll('[data-filter]')) {
    card.addEventListener('click', () => {
      const [name, value] = card.dataset.filter.split('=');
      for (const id of ['#f-signature', '#f-processing', '#f-status']) $(id).value = '';
      $(`#filters [name="${name}"]`).value = value;
      load();
    });
  }
  $('#d-close').addEventListener('click', () => $('#detail').close());
  $('#detail').addEventListener('click', (ev) => {
    // A click on the backdrop (the dialog element itself) closes it.
    if (ev.target === $('#detail')) $('#detail').close();
  });

  if (state.key) showBoard();
  else $('#key').focus();
})();
