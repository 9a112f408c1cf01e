// The Outworx dashboard: reads /api/stats and /api/events with the project's API key, and
// with an application's outbox or inbox attached, /api/outbound and /api/inbox.
// Every value from the API is untrusted (event types, URLs, answers and errors are whatever a
// webhook sender or an endpoint wrote): it is only ever set as text (textContent) or as an
// attribute, never parsed as markup.
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
    view: 'received',
    attached: { outbox: false, inbox: false },
    endpoints: new Map(), // id -> endpoint, for the messages' endpoint column
    epoch: 0, // bumped at sign-out: an answer begun before it is dropped
    detail: 0, // the latest detail asked for: an older one's answer is dropped
  };

  // --- the API --------------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, params, key = state.key, method = 'GET') {
    // Relative to the page, so the dashboard also works behind a path prefix.
    const url = new URL('../api/' + path, location.href);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== '' && v !== null && v !== undefined) url.searchParams.set(k, v);
    }
    const res = await fetch(url, { method, headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' });
    if (res.status === 401) throw new Unauthorized('The server did not accept this API key.');
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      // Not JSON: the status says enough.
    }
    if (!res.ok) {
      const err = new Error((body && body.error) || `The server answered ${res.status}.`);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  const post = (path, params) => api(path, params, state.key, 'POST');

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
      case 'queued': return ['queued', 'muted'];
      case 'ignored': return ['ignored', 'muted'];
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
    const actions = [];
    // A delivery of a queue route: its inbox row, with its attempts.
    const inboxId = e.metadata && e.metadata.inbox_id;
    if (state.attached.inbox && Number.isSafeInteger(inboxId)) {
      actions.push(button(`Inbox delivery #${inboxId}`, () => openInbox(inboxId), 'd-inbox'));
    }
    showDetail(actions);
  }

  // Opens the detail dialog with these action buttons (its fields are already set).
  function showDetail(actions) {
    $('#d-actions').replaceChildren(...actions);
    setError('#d-note', '');
    const dialog = $('#detail');
    if (!dialog.open) dialog.showModal();
  }

  function button(label, onClick, id, cls = 'quiet') {
    const b = el('button', label, cls);
    b.type = 'button';
    if (id) b.id = id;
    b.addEventListener('click', (ev) => {
      ev.stopPropagation(); // not the row's click
      onClick(b);
    });
    return b;
  }

  function fieldList(fields) {
    const dl = $('#d-fields');
    dl.replaceChildren();
    for (const [name, value] of fields) {
      if (value === undefined || value === null || value === '') continue;
      dl.append(el('dt', name), el('dd', value));
    }
  }

  const at = (ms) => (typeof ms === 'number' ? when(ms) : '—');
  // A count the server stopped at its cap is "at least".
  const capped = (n, cap) => (Number(n) >= Number(cap) ? `${cap}+` : String(Number(n) || 0));

  function age(ms) {
    if (typeof ms !== 'number') return '—';
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  // --- sending: the attached outbox -----------------------------------------------------

  const DELIVERY_CLASS = { delivered: 'ok', dead: 'bad', pending: 'warn', sending: 'muted' };

  function since(select) {
    const seconds = $(select).value;
    return seconds ? new Date(Date.now() - Number(seconds) * 1000).toISOString() : '';
  }

  function endpointRow(item) {
    const ep = item.endpoint || {};
    const h = item.health || {};
    const tr = el('tr');
    tr.dataset.id = ep.id;
    const name = el('td', ep.url, 'wrap');
    name.title = ep.id || '';
    const enabled = ep.enabled
      ? el('td', 'enabled', 'ok')
      : el('td', `disabled${ep.disabled_reason ? ': ' + ep.disabled_reason : ''}`, 'bad wrap');
    const tried = Number(h.recent_attempts) || 0;
    const ok = Number(h.recent_succeeded) || 0;
    const rate = tried ? Math.round((ok / tried) * 100) : null;
    const success = el('td', rate === null ? '—' : `${rate}%`, rate === null ? 'num muted' : rate >= 95 ? 'num ok' : rate >= 50 ? 'num warn' : 'num bad');
    success.title = tried ? `${ok} of the last ${tried} attempts answered 2xx` : 'no attempts yet';
    const last = h.last_status
      ? el('td', `${h.last_status} · ${at(h.last_attempt_at)}`, statusClass(h.last_status))
      : h.last_error
        ? el('td', `${h.last_error} · ${at(h.last_attempt_at)}`, 'bad wrap')
        : el('td', '—', 'muted');
    const actions = el('td');
    const box = el('div', null, 'actions');
    box.append(
      button('Replay dead', (b) => act(b, `outbound/endpoints/${encodeURIComponent(ep.id)}/replay`, { since: since('#ep-window') }, '#out-note')),
      ep.enabled
        ? button('Disable', (b) => act(b, `outbound/endpoints/${encodeURIComponent(ep.id)}/disable`, {}, '#out-note'))
        : button('Enable', (b) => act(b, `outbound/endpoints/${encodeURIComponent(ep.id)}/enable`, {}, '#out-note')),
      button('Rotate secret', (b) => confirmed(b, 'Rotate secret', () => rotate(b, ep.id))),
      button('Messages', () => {
        $('#out-endpoint').value = ep.id;
        loadSending();
      }),
    );
    actions.append(box);
    tr.append(name, el('td', ep.owner || '—', ep.owner ? '' : 'muted'), enabled, success, last,
      el('td', h.waiting ?? 0, 'num'), el('td', h.dead ?? 0, Number(h.dead) ? 'num bad' : 'num'), actions);
    return tr;
  }

  // A POST from a button, disabled while it runs: its outcome (or error) is written at
  // `noteAt`, then the view reloads.
  async function act(b, path, params, noteAt) {
    const epoch = state.epoch;
    b.disabled = true;
    try {
      const r = await post(path, params);
      if (epoch !== state.epoch) return;
      const what = r && typeof r.replayed === 'number'
        ? `${r.replayed} queued again`
        : r && r.endpoint ? `${r.endpoint.url}: ${r.endpoint.enabled ? 'enabled' : 'disabled'}` : 'done';
      setError(noteAt, what);
      $(noteAt).classList.remove('failed');
    } catch (err) {
      if (epoch !== state.epoch) return;
      if (err instanceof Unauthorized) return signOut(err.message);
      setError(noteAt, err.message);
      $(noteAt).classList.add('failed');
    } finally {
      b.disabled = false;
    }
    refresh();
  }

  // A button that acts only on a second click within 5 s (the first asks to confirm).
  function confirmed(b, label, onConfirm) {
    if (b.dataset.armed) {
      delete b.dataset.armed;
      b.textContent = label;
      onConfirm(b);
      return;
    }
    b.dataset.armed = '1';
    b.textContent = 'Click again to confirm';
    setTimeout(() => {
      delete b.dataset.armed;
      b.textContent = label;
    }, 5000);
  }

  async function rotate(b, id) {
    const epoch = state.epoch;
    b.disabled = true;
    try {
      const r = await post(`outbound/endpoints/${encodeURIComponent(id)}/rotate`, {});
      if (epoch !== state.epoch) return; // signed out meanwhile: never show it
      $('#s-value').textContent = String(r.secret || '');
      $('#secret').showModal();
    } catch (err) {
      if (epoch !== state.epoch) return;
      if (err instanceof Unauthorized) return signOut(err.message);
      setError('#sending-error', err.message);
    } finally {
      b.disabled = false;
    }
  }

  function messageRow(d) {
    const tr = el('tr');
    tr.tabIndex = 0;
    tr.dataset.id = d.id;
    tr.dataset.message = d.message_id;
    const ep = state.endpoints.get(d.endpoint_id);
    const answer = d.last_status ? el('td', d.last_status, statusClass(d.last_status)) : el('td', d.last_error || '—', d.last_error ? 'bad wrap' : 'muted');
    tr.append(
      el('td', at(d.updated_at)),
      el('td', d.message_id),
      el('td', d.event_type),
      el('td', ep ? ep.url : d.endpoint_id, 'wrap'),
      el('td', d.status, DELIVERY_CLASS[d.status] || ''),
      el('td', d.attempts, 'num'),
      answer,
    );
    const open = () => openMessage(d.message_id);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') open();
    });
    return tr;
  }

  async function openMessage(id) {
    const [epoch, detail] = [state.epoch, ++state.detail];
    let m;
    try {
      m = await api(`outbound/messages/${encodeURIComponent(id)}`);
    } catch (err) {
      if (epoch !== state.epoch || detail !== state.detail) return;
      if (err instanceof Unauthorized) return signOut(err.message);
      return setError('#sending-error', err.message);
    }
    if (epoch !== state.epoch || detail !== state.detail) return;
    const first = (m.deliveries || [])[0] || {};
    $('#d-title').textContent = `${first.event_type || 'message'} · ${id}`;
    fieldList([
      ['Message', id],
      ['Event type', first.event_type],
      ['Deliveries', (m.deliveries || []).map((d) => {
        const ep = state.endpoints.get(d.endpoint_id);
        return `${ep ? ep.url : d.endpoint_id}: ${d.status} after ${d.attempts} attempt(s)`;
      }).join('\n')],
    ]);
    const box = $('#d-sections');
    box.replaceChildren(el('h3', `Attempts (${(m.attempts || []).length}), newest first`));
    for (const a of m.attempts || []) {
      const ep = state.endpoints.get(a.endpoint_id);
      const head = `#${a.attempt} · ${at(a.at)} · ${a.status_code ?? 'no answer'} · ${a.duration_ms} ms · ${ep ? ep.url : a.endpoint_id}`;
      const h = el('h3', head, a.status_code >= 200 && a.status_code < 300 ? 'ok' : 'bad');
      h.classList.add('attempt');
      box.append(h);
      if (a.error) box.append(el('pre', a.error));
      box.append(el('pre', a.response || '(empty answer)', 'response'));
    }
    showDetail([button('Replay this message', (b) => act(b, `outbound/messages/${encodeURIComponent(id)}/replay`, {}, '#d-note'), 'd-replay')]);
  }

  async function loadSending() {
    const seq = ++state.seq;
    try {
      const [overview, list] = await Promise.all([
        api('outbound'),
        api('outbound/messages', { status: $('#out-status').value, endpoint_id: $('#out-endpoint').value, limit: 100 }),
      ]);
      if (seq !== state.seq) return;
      const endpoints = overview.endpoints || [];
      state.endpoints = new Map(endpoints.map((e) => [e.endpoint.id, e.endpoint]));
      for (const node of document.querySelectorAll('[data-out]')) {
        node.textContent = capped((overview.counts || {})[node.dataset.out], overview.count_cap);
      }
      const shown = endpoints.length < Number(overview.endpoints_total) ? `; the first ${endpoints.length} of ${Number(overview.endpoints_total)} shown` : '';
      $('#health-note').textContent = `success over each endpoint's last ${Number(overview.health_attempts) || 0} attempts${shown}`;
      $('#endpoints tbody').replaceChildren(...endpoints.map(endpointRow));
      $('#endpoints-empty').hidden = endpoints.length > 0;
      const select = $('#out-endpoint');
      const chosen = select.value;
      const option = (value, label) => {
        const o = el('option', label);
        o.value = value;
        return o;
      };
      // Rebuilt only when the list changes, so a live refresh does not close an open list.
      const wanted = ['', ...endpoints.map((e) => e.endpoint.id)];
      if ([...select.options].map((o) => o.value).join('\n') !== wanted.join('\n')) {
        select.replaceChildren(option('', 'all'), ...endpoints.map((e) => option(e.endpoint.id, e.endpoint.url)));
        select.value = chosen;
      }
      const deliveries = list.deliveries || [];
      $('#messages tbody').replaceChildren(...deliveries.map(messageRow));
      $('#messages-empty').hidden = deliveries.length > 0;
      setError('#sending-error', '');
      document.body.dataset.loaded = String(seq);
    } catch (err) {
      if (seq !== state.seq) return;
      if (err instanceof Unauthorized) signOut(err.message);
      else setError('#sending-error', err.message);
    }
  }

  // --- the inbox --------------------------------------------------------------------------

  const INBOX_CLASS = { done: 'ok', dead: 'bad', pending: 'warn', processing: 'muted' };

  function inboxStatus(e) {
    return e.status === 'pending' && e.attempts > 0 ? 'retrying' : e.status;
  }

  function inboxRow(e) {
    const tr = el('tr');
    tr.tabIndex = 0;
    tr.dataset.id = e.id;
    const status = inboxStatus(e);
    tr.append(
      el('td', e.id, 'num'),
      el('td', at(e.received_at)),
      el('td', e.route),
      el('td', e.event_type || '—', e.event_type ? '' : 'muted'),
      el('td', status, INBOX_CLASS[e.status] || ''),
      el('td', `${e.attempts} / ${e.max_attempts}`, 'num'),
      el('td', e.last_error || '—', e.last_error ? 'bad wrap' : 'muted'),
    );
    const open = () => openInbox(e.id);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') open();
    });
    return tr;
  }

  async function openInbox(id) {
    const [epoch, detail] = [state.epoch, ++state.detail];
    let r;
    try {
      r = await api(`inbox/${encodeURIComponent(id)}`);
    } catch (err) {
      if (epoch !== state.epoch || detail !== state.detail) return;
      if (err instanceof Unauthorized) return signOut(err.message);
      if ($('#detail').open) return setError('#d-note', err.message);
      return setError('#inbox-error', err.message);
    }
    if (epoch !== state.epoch || detail !== state.detail) return;
    const e = r.entry || {};
    $('#d-title').textContent = `Inbox delivery #${e.id} · ${e.route}`;
    fieldList([
      ['Status', inboxStatus(e)],
      ['Route', e.route],
      ['Event type', e.event_type],
      ['Request', `${e.method} ${e.uri}`],
      ['Idempotency key', e.key],
      ['Received', at(e.received_at)],
      ['Attempts', `${e.attempts} of ${e.max_attempts}`],
      ['Next attempt', e.status === 'pending' ? at(e.next_attempt_at) : null],
      ['Last HTTP status', e.last_status],
      ['Last error', e.last_error],
      ['Body', `${bytes(e.body_bytes)} (not shown: outworx inbox show --body)`],
    ]);
    const box = $('#d-sections');
    const events = r.events || [];
    box.replaceChildren(el('h3', `Reported attempts (${events.length}): the receipt, then each run`));
    const list = el('ol', null, 'runs');
    for (const item of events) {
      const ev = item.event || {};
      const [proc] = processing(ev);
      const text = `${when(ev.timestamp)} · ${ev.status_code} · ${ev.processing_status === 'queued' ? 'queued' : proc}` +
        `${typeof ev.duration_ms === 'number' ? ` · ${ev.duration_ms} ms` : ''}` +
        `${ev.processing_failure_reason ? ' · ' + ev.processing_failure_reason : ''}${ev.error_message ? ' · ' + ev.error_message : ''}`;
      list.append(el('li', text, statusClass(ev.status_code)));
    }
    box.append(list);
    // A dead one is replayed; a done one may be run again on purpose; a queued one waits.
    const replay = e.status === 'dead' || e.status === 'done'
      ? [button(e.status === 'dead' ? 'Replay this delivery' : 'Run it again', (b) => act(b, `inbox/${encodeURIComponent(e.id)}/replay`, {}, '#d-note'), 'd-replay')]
      : [];
    showDetail(replay);
  }

  async function loadInbox() {
    const seq = ++state.seq;
    try {
      const r = await api('inbox', { status: $('#in-status').value, route: $('#in-route').value.trim(), limit: 100 });
      if (seq !== state.seq) return;
      const summary = r.summary || {};
      for (const node of document.querySelectorAll('[data-in]')) {
        node.textContent = capped(summary[node.dataset.in], r.count_cap);
      }
      const oldest = r.oldest_pending_age_ms;
      $('#inbox-oldest').textContent = typeof oldest === 'number' ? age(oldest) : 'nothing waits';
      $('#inbox-oldest-card').classList.toggle('late', typeof oldest === 'number' && oldest > 5 * 60 * 1000);
      const entries = r.entries || [];
      $('#inbox tbody').replaceChildren(...entries.map(inboxRow));
      $('#inbox-empty').hidden = entries.length > 0;
      setError('#inbox-error', '');
      document.body.dataset.loaded = String(seq);
    } catch (err) {
      if (seq !== state.seq) return;
      if (err instanceof Unauthorized) signOut(err.message);
      else setError('#inbox-error', err.message);
    }
  }

  // --- views ------------------------------------------------------------------------------

  function refresh() {
    if (!state.key) return undefined; // signed out: nothing to load
    if (state.view === 'sending') return loadSending();
    if (state.view === 'inbox') return loadInbox();
    return load();
  }

  function showView(view) {
    state.view = view;
    for (const tab of document.querySelectorAll('#tabs [data-view]')) {
      if (tab.dataset.view === view) tab.setAttribute('aria-current', 'page');
      else tab.removeAttribute('aria-current');
    }
    for (const name of ['received', 'sending', 'inbox']) $(`#view-${name}`).hidden = name !== view;
    refresh();
  }

  // Which of the outbox and the inbox this project has attached (404: not attached to it).
  async function probe() {
    const epoch = state.epoch;
    const has = async (path) => {
      try {
        await api(path, { limit: 1 });
        return true;
      } catch (err) {
        if (err instanceof Unauthorized) throw err;
        return err.status !== 404;
      }
    };
    const [outbox, inbox] = await Promise.all([has('outbound/messages'), has('inbox')]);
    if (epoch !== state.epoch) return; // asked for the previous key
    state.attached = { outbox, inbox };
    $('#tab-sending').hidden = !outbox;
    $('#tab-inbox').hidden = !inbox;
    $('#tabs').hidden = !(outbox || inbox);
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
      if (!$('#f-live').checked || document.hidden || $('#detail').open || $('#secret').open) return;
      if (state.view === 'received' && state.paged) return;
      refresh();
    }, LIVE_MS);
  }

  // --- sign in / out --------------------------------------------------------------------

  function showBoard() {
    $('#login').hidden = true;
    $('#board').hidden = false;
    $('#signout').hidden = false;
    showView('received');
    live();
    probe().catch((err) => {
      if (err instanceof Unauthorized) signOut(err.message);
    });
  }

  function signOut(message) {
    clearInterval(state.timer);
    state.seq += 1; // an answer still on its way belongs to the old key: drop it
    state.epoch += 1;
    state.key = '';
    state.rows = [];
    state.shown = null;
    clearRange();
    sessionStorage.removeItem(KEY_STORE);
    $('#filters').reset(); // the next project starts unfiltered
    $('#events tbody').replaceChildren();
    for (const t of ['#endpoints', '#messages', '#inbox']) $(`${t} tbody`).replaceChildren();
    for (const f of ['#out-filters', '#in-filters']) $(f).reset();
    state.attached = { outbox: false, inbox: false };
    state.endpoints = new Map();
    state.view = 'received';
    for (const t of ['#tabs', '#tab-sending', '#tab-inbox']) $(t).hidden = true;
    for (const d of ['#detail', '#secret']) if ($(d).open) $(d).close();
    // Nothing of the previous project stays in the page.
    $('#s-value').textContent = '';
    for (const n of ['#d-title', '#d-fields', '#d-sections', '#d-actions', '#health-note']) $(n).replaceChildren();
    for (const n of ['#d-note', '#out-note', '#inbox-note', '#sending-error', '#inbox-error']) setError(n, '');
    for (const n of document.querySelectorAll('[data-out], [data-in]')) n.textContent = '0';
    $('#inbox-oldest').textContent = '—';
    const all = el('option', 'all');
    all.value = '';
    $('#out-endpoint').replaceChildren(all);
    $('#ep-window').value = '86400';
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
  for (const tab of document.querySelectorAll('#tabs [data-view]')) {
    tab.addEventListener('click', () => showView(tab.dataset.view));
  }
  $('#out-filters').addEventListener('change', () => loadSending());
  $('#in-filters').addEventListener('change', (ev) => {
    if (ev.target.id !== 'in-since') loadInbox();
  });
  $('#in-filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadInbox();
  });
  for (const card of document.querySelectorAll('[data-out-status]')) {
    card.addEventListener('click', () => {
      $('#out-status').value = card.dataset.outStatus;
      loadSending();
    });
  }
  for (const card of document.querySelectorAll('[data-in-status]')) {
    card.addEventListener('click', () => {
      $('#in-status').value = card.dataset.inStatus;
      loadInbox();
    });
  }
  $('#in-replay-dead').addEventListener('click', async (ev) => {
    const route = $('#in-route').value.trim();
    if (!route) return setError('#inbox-error', 'Name the route whose dead deliveries to replay.');
    const b = ev.currentTarget;
    b.disabled = true;
    try {
      const r = await post('inbox/replay', { route, since: since('#in-since') });
      setError('#inbox-error', '');
      setError('#inbox-note', `${r.replayed} queued again`);
    } catch (err) {
      if (err instanceof Unauthorized) return signOut(err.message);
      setError('#inbox-error', err.message);
    } finally {
      b.disabled = false;
    }
    loadInbox();
  });
  // The secret is shown once: closing its dialog forgets it.
  $('#s-done').addEventListener('click', () => $('#secret').close());
  // Escape would close it with the secret unread: only the button closes it.
  $('#secret').addEventListener('cancel', (ev) => ev.preventDefault());
  $('#secret').addEventListener('close', () => {
    $('#s-value').textContent = '';
    refresh();
  });
  $('#detail').addEventListener('click', (ev) => {
    // A click on the backdrop (the dialog element itself) closes it.
    if (ev.target === $('#detail')) $('#detail').close();
  });

  if (state.key) showBoard();
  else $('#key').focus();
})();
