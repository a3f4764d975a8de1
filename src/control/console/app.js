// The Sluice console: plain JavaScript over the token-protected rules API (/api/v1). The token
// lives in this tab's sessionStorage and travels only in the Authorization header.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'sluice-token';
const POLL_MS = 2000;
const TAP_POLL_MS = 1000;
const PLAYGROUND_FILE = 'playground.toml';

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  functions: [],
  samples: [],
  prev: null, // { at, counts: {name: {matched, passed, failed}} }
  checkSeq: 0,
  tapFilter: '',
  tapSamples: [],
  shadow: '',
  completion: { items: [], index: 0, start: 0, end: 0 },
  loaded: false,
};

class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function setStatus(text, kind) {
  const el = $('status');
  el.textContent = text;
  el.className = kind || '';
}

// One API call. Network failures, a bad token and a disabled API are shown in the status bar.
async function api(method, path, body) {
  if (!state.token) {
    setStatus('Not connected: enter the API token.', 'bad');
    throw new ApiError('no token', 0);
  }
  const headers = { Authorization: `Bearer ${state.token}` };
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    headers['Content-Type'] = typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    setStatus(`Sluice API unreachable (${e.message}); retrying every ${POLL_MS / 1000} s.`, 'bad');
    throw new ApiError('unreachable', 0);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (res.status === 401) {
    setStatus('Invalid token: the API refused it (401). Enter the token of this Sluice ([admin] token).', 'bad');
    throw new ApiError('invalid token', 401, json);
  }
  if (res.status === 403) {
    setStatus('The rules API is disabled: this Sluice has no [admin] token configured.', 'bad');
    throw new ApiError('api disabled', 403, json);
  }
  if (!res.ok) {
    throw new ApiError((json && json.error) || text || res.statusText, res.status, json);
  }
  setStatus('Connected.', 'good');
  return json;
}

// ---- Views -----------------------------------------------------------------------------

function showView() {
  const view = (location.hash.replace(/^#\//, '') || 'rules').split('/')[0];
  for (const s of document.querySelectorAll('main > section[data-view]')) {
    s.hidden = s.dataset.view !== view;
  }
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// ---- Rules -----------------------------------------------------------------------------

function rate(now, prev, name, key, dt) {
  const before = prev && prev.counts[name];
  if (!before || dt <= 0) return '0.0';
  return Math.max(0, (now[key] - before[key]) / dt).toFixed(1);
}

function cell(row, col, cls) {
  let td = row.querySelector(`[data-col="${col}"]`);
  if (!td) {
    td = document.createElement('td');
    td.dataset.col = col;
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  return td;
}

function renderRules(list) {
  const body = $('rules-body');
  const now = Date.now();
  const counts = {};
  const dt = state.prev ? (now - state.prev.at) / 1000 : 0;
  const seen = new Set();
  for (const r of list.rules) {
    seen.add(r.name);
    const c = r.counts || { matched: 0, passed: 0, failed: 0 };
    counts[r.name] = c;
    let row = body.querySelector(`tr[data-rule="${CSS.escape(r.name)}"]`);
    if (!row) {
      row = document.createElement('tr');
      row.dataset.rule = r.name;
      row.tabIndex = 0;
      row.addEventListener('click', (e) => {
        if (!e.target.closest('button')) showErrors(r.name);
      });
      row.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.target.closest('button')) showErrors(r.name);
      });
      body.appendChild(row);
    }
    const badge = r.status === 'invalid' ? ' (does not compile)' : r.status === 'conflict' ? ' (name conflict)' : '';
    cell(row, 'name').textContent = r.name + badge;
    const en = cell(row, 'enabled');
    let label = en.querySelector('span');
    let toggle = en.querySelector('button');
    if (!label) {
      label = document.createElement('span');
      toggle = document.createElement('button');
      toggle.type = 'button';
      toggle.className = 'secondary';
      toggle.dataset.testid = 'toggle';
      toggle.addEventListener('click', () => setEnabled(row.dataset.rule, toggle.dataset.enable === 'true'));
      en.append(label, ' ', toggle);
    }
    label.textContent = r.enabled ? 'enabled' : 'disabled';
    en.className = r.enabled ? '' : 'state-disabled';
    toggle.textContent = r.enabled ? 'Disable' : 'Enable';
    toggle.dataset.enable = r.enabled ? 'false' : 'true';
    toggle.setAttribute('aria-label', `${r.enabled ? 'Disable' : 'Enable'} rule ${r.name}`);
    cell(row, 'file').textContent = r.path;
    cell(row, 'matched', 'num').textContent = rate(c, state.prev, r.name, 'matched', dt);
    cell(row, 'passed', 'num').textContent = rate(c, state.prev, r.name, 'passed', dt);
    cell(row, 'failed', 'num').textContent = rate(c, state.prev, r.name, 'failed', dt);
    const err = r.errors && r.errors.length ? r.errors[0].text : r.last_error || '';
    cell(row, 'error', 'err').textContent = err;
  }
  for (const row of [...body.querySelectorAll('tr[data-rule]')]) {
    if (!seen.has(row.dataset.rule)) row.remove();
  }
  state.prev = { at: now, counts };
}

async function refreshRules() {
  renderRules(await api('GET', '/api/v1/rules'));
}

async function setEnabled(name, enable) {
  try {
    await api('POST', `/api/v1/rules/${encodeURIComponent(name)}/${enable ? 'enable' : 'disable'}`);
    await refreshRules();
  } catch (e) {
    if (e.status) setStatus(`Could not ${enable ? 'enable' : 'disable'} ${name}: ${e.message}`, 'bad');
  }
}

async function showErrors(name) {
  try {
    const v = await api('GET', `/api/v1/rules/${encodeURIComponent(name)}/errors`);
    const lines = [];
    for (const e of v.compile || []) lines.push(e.rendered || e.text);
    for (const e of v.recent || []) lines.push(`${new Date(e.received_ms).toISOString()} ${e.stage} ${e.topic}: ${e.reason}`);
    $('errors-title').textContent = `Recent errors of ${name}`;
    $('errors-list').textContent = lines.length ? lines.join('\n') : 'No errors.';
    $('rule-detail').hidden = false;
    $('rule-detail').dataset.rule = name;
    await showHistory(name);
  } catch (e) {
    if (e.status) setStatus(`Errors of ${name}: ${e.message}`, 'bad');
  }
}

async function showHistory(name) {
  const list = $('history');
  list.replaceChildren();
  $('history-text').hidden = true;
  let h;
  try {
    h = await api('GET', `/api/v1/rules/${encodeURIComponent(name)}/history`);
  } catch (e) {
    if (e.status === 404) return;
    throw e;
  }
  $('history-title').textContent = `Saved versions of ${name}`;
  const versions = [...h.versions].reverse();
  versions.forEach((v, i) => {
    const li = document.createElement('li');
    li.dataset.version = String(v.version);
    li.dataset.action = v.action;
    li.value = v.version;
    const when = new Date(v.saved_ms).toISOString().replace('T', ' ').slice(0, 19);
    const label = document.createElement('span');
    label.textContent = `v${v.version} ${v.action}, ${when} UTC${i === 0 ? ' (latest)' : ''}`;
    const view = document.createElement('button');
    view.type = 'button';
    view.className = 'secondary';
    view.textContent = 'View';
    view.addEventListener('click', async () => {
      const t = await api('GET', `/api/v1/rules/${encodeURIComponent(name)}/history/${v.version}`);
      $('history-text').textContent = t.text;
      $('history-text').hidden = false;
    });
    const back = document.createElement('button');
    back.type = 'button';
    back.dataset.testid = 'rollback';
    back.textContent = 'Roll back';
    back.setAttribute('aria-label', `Roll ${name} back to version ${v.version}`);
    back.addEventListener('click', async () => {
      try {
        await api('POST', `/api/v1/rules/${encodeURIComponent(name)}/rollback`, { version: v.version });
        setStatus(`Rolled ${name} back to version ${v.version}.`, 'good');
        await refreshRules();
        await showHistory(name);
      } catch (e) {
        if (e.status) setStatus(`Roll back failed: ${e.message}`, 'bad');
      }
    });
    li.append(label, view, back);
    list.appendChild(li);
  });
}

// ---- Playground ------------------------------------------------------------------------

let checkTimer = null;
function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(check, 250);
}

async function check() {
  const seq = ++state.checkSeq;
  const text = $('editor').value;
  const d = $('diagnostics');
  try {
    const v = await api('POST', `/api/v1/check?file=${encodeURIComponent(PLAYGROUND_FILE)}`, text);
    if (seq !== state.checkSeq) return;
    d.dataset.ok = v.ok ? 'true' : 'false';
    d.textContent = v.ok ? 'The rule compiles.' : v.errors.map((e) => e.rendered || e.text).join('\n\n');
  } catch (e) {
    if (seq !== state.checkSeq) return;
    d.dataset.ok = 'false';
    d.textContent = e.status ? `Cannot check: ${e.message}` : '';
  }
}

function wordBefore(text, pos) {
  const m = /[A-Za-z_][A-Za-z0-9_]*$/.exec(text.slice(0, pos));
  return m ? { word: m[0], start: pos - m[0].length } : null;
}

function updateCompletions() {
  const ed = $('editor');
  const list = $('completions');
  const pos = ed.selectionStart;
  const w = ed.selectionStart === ed.selectionEnd ? wordBefore(ed.value, pos) : null;
  const items = w && w.word.length >= 2 ? state.functions.filter((f) => f.name.toLowerCase().startsWith(w.word.toLowerCase()) && f.name !== w.word).slice(0, 10) : [];
  state.completion = { items, index: 0, start: w ? w.start : 0, end: pos };
  list.replaceChildren();
  if (!items.length) {
    list.hidden = true;
    return;
  }
  items.forEach((f, i) => {
    const li = document.createElement('li');
    li.dataset.function = f.name;
    li.setAttribute('role', 'option');
    li.setAttribute('aria-selected', i === 0 ? 'true' : 'false');
    li.title = f.doc;
    const sig = document.createElement('span');
    sig.className = 'sig';
    sig.textContent = f.signature;
    const doc = document.createElement('span');
    doc.className = 'doc';
    doc.textContent = f.doc.length > 160 ? `${f.doc.slice(0, 157)}…` : f.doc;
    li.append(sig, doc);
    li.addEventListener('mousedown', (e) => {
      e.preventDefault();
      acceptCompletion(i);
    });
    list.appendChild(li);
  });
  list.hidden = false;
}

function moveCompletion(delta) {
  const c = state.completion;
  c.index = (c.index + delta + c.items.length) % c.items.length;
  [...$('completions').children].forEach((li, i) => li.setAttribute('aria-selected', i === c.index ? 'true' : 'false'));
}

function acceptCompletion(i) {
  const c = state.completion;
  const f = c.items[i];
  if (!f) return;
  const ed = $('editor');
  const insert = `${f.name}(`;
  ed.value = ed.value.slice(0, c.start) + insert + ed.value.slice(c.end);
  const at = c.start + insert.length;
  ed.setSelectionRange(at, at);
  ed.focus();
  $('completions').hidden = true;
  scheduleCheck();
}

function onEditorKey(e) {
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
    e.preventDefault();
    run();
    return;
  }
  if ($('completions').hidden) return;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    e.preventDefault();
    moveCompletion(e.key === 'ArrowDown' ? 1 : -1);
  } else if (e.key === 'Enter' || e.key === 'Tab') {
    e.preventDefault();
    acceptCompletion(state.completion.index);
  } else if (e.key === 'Escape') {
    $('completions').hidden = true;
  }
}

function fillSamples() {
  const sel = $('sample-select');
  sel.replaceChildren(new Option('(seed-format examples)', ''));
  state.samples.forEach((s, i) => sel.appendChild(new Option(s.name, String(i))));
}

function pickSample() {
  const s = state.samples[Number($('sample-select').value)];
  if (!s || $('sample-select').value === '') return;
  $('sample-topic').value = s.topic;
  $('sample-payload').value = s.payload;
}

async function run() {
  const out = $('output');
  out.textContent = 'Running…';
  const body = $('sequence-mode').checked
    ? { rule: $('editor').value, file: PLAYGROUND_FILE, topic: '', sequence: $('sample-payload').value }
    : { rule: $('editor').value, file: PLAYGROUND_FILE, topic: $('sample-topic').value.trim(), payload: $('sample-payload').value };
  try {
    const v = await api('POST', '/api/v1/test', body);
    if (v.lines && v.lines.length) out.textContent = v.lines.join('\n');
    else if (!v.topic_matches) out.textContent = "(no output: the sample's topic does not match the rule's FROM filter)";
    else out.textContent = '(no output records: WHERE filtered the message out, or the rule emits nothing for it)';
  } catch (e) {
    if (e.body && e.body.errors && e.body.errors.length) out.textContent = e.body.errors.map((x) => x.rendered || x.text).join('\n\n');
    else out.textContent = e.status ? `The test failed: ${e.message}` : 'The test could not run: the API is not reachable.';
  }
}

async function startTap() {
  const filter = $('tap-filter').value.trim();
  if (!filter) {
    $('tap-status').textContent = 'Enter a topic filter first.';
    return;
  }
  try {
    await api('POST', '/api/v1/tap', { filter });
    state.tapFilter = filter;
    $('tap-status').textContent = `Capturing ${filter}: the most recent messages appear below (click one to use it).`;
    await refreshTap();
  } catch (e) {
    if (e.status) $('tap-status').textContent = e.status === 409 ? `${e.message}.` : `Cannot capture: ${e.message}`;
  }
}

async function refreshTap() {
  if (!state.tapFilter) return;
  const v = await api('GET', '/api/v1/tap');
  const cap = (v.captures || []).find((c) => c.filter === state.tapFilter);
  const samples = cap ? [...cap.samples].reverse() : [];
  const list = $('tap-samples');
  const key = JSON.stringify(samples.map((s) => [s.received_ms, s.topic]));
  if (key === list.dataset.key) return;
  list.dataset.key = key;
  state.tapSamples = samples;
  list.replaceChildren();
  samples.forEach((s, i) => {
    const li = document.createElement('li');
    li.tabIndex = 0;
    li.dataset.sampleIndex = String(i);
    const text = s.payload !== null && s.payload !== undefined ? s.payload : `(binary, base64) ${s.payload_base64}`;
    li.textContent = `${new Date(s.received_ms).toISOString().slice(11, 23)}  ${s.topic}  ${text.length > 200 ? `${text.slice(0, 197)}…` : text}`;
    const use = () => {
      $('sample-topic').value = s.topic;
      $('sample-payload').value = s.payload !== null && s.payload !== undefined ? s.payload : '';
    };
    li.addEventListener('click', use);
    li.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') use();
    });
    list.appendChild(li);
  });
}

async function save() {
  const name = $('rule-name').value.trim();
  const status = $('save-status');
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(name)) {
    status.textContent = 'A rule name: letters, digits, _, - and . (the file is <name>.toml in the rules folder).';
    return;
  }
  const text = $('editor').value;
  try {
    let v;
    try {
      v = await api('PUT', `/api/v1/rules/${encodeURIComponent(name)}`, text);
    } catch (e) {
      if (e.status !== 404) throw e;
      v = await api('POST', `/api/v1/rules?name=${encodeURIComponent(name)}`, text);
    }
    status.textContent = `Saved ${v.rule.path}.`;
    refreshRules().catch(() => {});
  } catch (e) {
    if (e.body && e.body.errors && e.body.errors.length) status.textContent = `Not saved: ${e.body.errors[0].text}`;
    else status.textContent = e.status ? `Not saved: ${e.message}` : 'Not saved: the API is not reachable.';
  }
}

// ---- Integration channel ---------------------------------------------------------------

function rows(body, items, cells) {
  body.replaceChildren();
  for (const it of items) {
    const tr = document.createElement('tr');
    for (const [text, cls] of cells(it)) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

const time = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

async function refreshIntegration() {
  const v = await api('GET', '/api/v1/integration');
  const now = Date.now();
  const prev = state.intPrev;
  const dt = prev ? (now - prev.at) / 1000 : 0;
  rows($('replies-body'), v.replies, (r) => {
    const before = prev && prev.totals[r.code];
    const rate = before !== undefined && dt > 0 ? Math.max(0, (r.total - before) / dt).toFixed(1) : '0.0';
    return [[r.code], [r.message], [rate, 'num'], [String(r.total), 'num']];
  });
  for (const tr of $('replies-body').children) tr.dataset.code = tr.firstChild.textContent;
  state.intPrev = { at: now, totals: Object.fromEntries(v.replies.map((r) => [r.code, r.total])) };
  const e = v.entries || {};
  $('entries').textContent = `Entries: ${e.accepted || 0} accepted, ${e.rejected || 0} rejected.`;
  rows($('files-body'), [...v.files].reverse(), (f) => [[time(f.timeMs)], [f.original], [String(f.bytes), 'num'], [f.uri]]);
  if (!v.files.length) $('files-body').innerHTML = '<tr><td colspan="4">No file stored yet.</td></tr>';
  rows($('int-errors-body'), [...v.errors].reverse(), (x) => [[time(x.timeMs)], [String(x.code)], [x.stage], [x.topic], [x.requestId === null || x.requestId === undefined ? '' : String(x.requestId)], [x.message, 'err']]);
  if (!v.errors.length) $('int-errors-body').innerHTML = '<tr><td colspan="6">No rejected request.</td></tr>';
}

// ---- Shadow runs -----------------------------------------------------------------------

function renderShadow(r) {
  $('shadow').hidden = false;
  for (const side of ['live', 'candidate']) {
    for (const td of document.querySelectorAll(`#shadow tr[data-side="${side}"] td[data-k]`)) td.textContent = String(r[side][td.dataset.k]);
  }
  document.querySelector('[data-testid=shadow-compared]').textContent = String(r.compared);
  document.querySelector('[data-testid=shadow-differing]').textContent = String(r.differing);
  $('shadow-examples').textContent = r.examples.length
    ? r.examples.map((d) => `${d.topic}\n  live:      ${d.live.join('\n             ') || '(no record)'}\n  candidate: ${d.candidate.join('\n             ') || '(no record)'}`).join('\n\n')
    : 'No difference yet.';
}

async function startShadow() {
  const name = $('rule-name').value.trim();
  const status = $('save-status');
  if (!name) {
    status.textContent = 'Name the saved rule to shadow (Save as rule).';
    return;
  }
  try {
    const r = await api('POST', `/api/v1/rules/${encodeURIComponent(name)}/shadow`, $('editor').value);
    state.shadow = name;
    status.textContent = `Shadowing ${name}.`;
    $('shadow-status').textContent = '';
    renderShadow(r);
  } catch (e) {
    if (e.body && e.body.errors && e.body.errors.length) status.textContent = `Cannot shadow: ${e.body.errors[0].text}`;
    else status.textContent = e.status ? `Cannot shadow: ${e.message}` : 'Cannot shadow: the API is not reachable.';
  }
}

async function refreshShadow() {
  if (!state.shadow) return;
  try {
    renderShadow(await api('GET', `/api/v1/rules/${encodeURIComponent(state.shadow)}/shadow`));
  } catch (e) {
    if (e.status === 404) {
      state.shadow = '';
      $('shadow-status').textContent = 'The shadow run ended.';
    }
  }
}

async function promoteShadow() {
  const name = state.shadow;
  if (!name) return;
  try {
    const v = await api('POST', `/api/v1/rules/${encodeURIComponent(name)}/shadow/promote`);
    state.shadow = '';
    $('shadow-status').textContent = `Promoted: ${v.rule.path} holds the candidate.`;
    refreshRules().catch(() => {});
  } catch (e) {
    if (e.status) $('shadow-status').textContent = `Not promoted: ${e.body && e.body.errors && e.body.errors.length ? e.body.errors[0].text : e.message}`;
  }
}

async function stopShadow() {
  const name = state.shadow;
  if (!name) return;
  try {
    await api('DELETE', `/api/v1/rules/${encodeURIComponent(name)}/shadow`);
  } catch {
    // gone already
  }
  state.shadow = '';
  $('shadow-status').textContent = 'Stopped.';
}

// ---- Start -----------------------------------------------------------------------------

async function connect() {
  try {
    await refreshRules();
    if (!state.loaded) {
      state.functions = await api('GET', '/api/v1/functions');
      state.samples = await api('GET', '/api/v1/samples');
      fillSamples();
      state.loaded = true;
    }
    check();
  } catch {
    // shown in the status bar
  }
}

async function poll() {
  if (state.token) {
    try {
      await refreshRules();
      if (!state.loaded) await connect();
      if (!$('view-playground').hidden) {
        await refreshTap();
        await refreshShadow();
      }
      if (!$('view-integration').hidden) await refreshIntegration();
    } catch {
      // shown in the status bar
    }
  }
  setTimeout(poll, (state.tapFilter || state.shadow) && !$('view-playground').hidden ? TAP_POLL_MS : POLL_MS);
}

function init() {
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    state.prev = null;
    connect();
  });
  const ed = $('editor');
  ed.addEventListener('input', () => {
    scheduleCheck();
    updateCompletions();
  });
  ed.addEventListener('keydown', onEditorKey);
  ed.addEventListener('click', () => $('completions').hidden = true);
  ed.addEventListener('blur', () => setTimeout(() => ($('completions').hidden = true), 150));
  $('sample-select').addEventListener('change', pickSample);
  $('sequence-mode').addEventListener('change', () => {
    const seq = $('sequence-mode').checked;
    $('sample-topic').disabled = seq;
    $('payload-label').textContent = seq ? 'Sequence (JSON lines)' : 'Payload';
  });
  $('run').addEventListener('click', run);
  $('sample-payload').addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') run();
  });
  $('tap-start').addEventListener('click', startTap);
  $('save').addEventListener('click', save);
  $('shadow-start').addEventListener('click', startShadow);
  $('shadow-promote').addEventListener('click', promoteShadow);
  $('shadow-stop').addEventListener('click', stopShadow);
  window.addEventListener('hashchange', () => {
    showView();
    if (!$('view-integration').hidden && state.token) refreshIntegration().catch(() => {});
  });
  showView();
  if (state.token) {
    $('token').value = state.token;
    connect();
  }
  setTimeout(poll, POLL_MS);
}

init();
