// The web console (`sluice run`'s admin server under /ui/) in headless Chromium, driven by
// playwright-core: token, rules table, playground (diagnostics, completion, a shipped sample,
// a live sample from the tap), save, disable, and the API going away. tests/it/console.rs starts
// Mosquitto and Sluice and runs this script; by hand:
//
//   SLUICE_URL=http://127.0.0.1:9898 SLUICE_TOKEN=… SLUICE_RULES_DIR=rules SLUICE_MQTT_PORT=1883 \
//   SLUICE_ARTIFACTS=target/browser-artifacts/console SLUICE_KILL_PID=<pid of sluice> \
//   node tests/browser/console.mjs
//
// Environment: SLUICE_URL (the admin server), SLUICE_TOKEN (its bearer token), SLUICE_RULES_DIR
// (the rules folder on disk), SLUICE_MQTT_PORT (Mosquitto on 127.0.0.1), SLUICE_ARTIFACTS
// (screenshots; created), SLUICE_KILL_PID (the last step kills it), CHROMIUM (default
// /usr/bin/chromium), SLUICE_BIN (optional: the `sluice` binary, whose `sluice check` output
// the playground's diagnostics are compared with).
//
// Steps run in order; each is followed by a screenshot NN-<step>.png. The first failure takes
// failure.png, prints the step, what was expected and what was there, and the text of
// [data-testid=status], and exits 1. Every wait is on state (DOM, files) with a 15 s deadline.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual, promisify } from 'node:util';

import { chromium } from 'playwright-core';

const run = promisify(execFile);
const TIMEOUT = 15_000;
/// The whole script's deadline: a hang fails instead of blocking the test.
const SCRIPT_TIMEOUT = 5 * 60_000;
const POLL_MS = 100;

function need(name) {
    const v = process.env[name];
    if (!v) {
        console.error(`console.mjs: the environment variable ${name} is not set`);
        process.exit(2);
    }
    return v;
}

const URL_BASE = need('SLUICE_URL').replace(/\/+$/, '');
const TOKEN = need('SLUICE_TOKEN');
const RULES_DIR = need('SLUICE_RULES_DIR');
const MQTT_PORT = need('SLUICE_MQTT_PORT');
const ARTIFACTS = need('SLUICE_ARTIFACTS');
const KILL_PID = Number(need('SLUICE_KILL_PID'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SLUICE_BIN = process.env.SLUICE_BIN || '';
const WRONG_TOKEN = `not-the-token-${process.pid}`;

// A compile error: an unknown function (deviceName misspelt). (`SELECT a, FROM …` is no error:
// the SQL dialect accepts a trailing comma in the select list.)
const BAD_RULE = 'sql = "SELECT devicename() AS dn FROM \\"/sys/+/+/thing/event/property/post\\""\n[[actions]]\ntopic = "out"\n';
const GOOD_RULE = 'sql = "SELECT deviceName() AS dn, items.temp.value AS t FROM \\"/sys/+/+/thing/event/property/post\\""\n[[actions]]\ntopic = "out"\n';
const COMPLETION_RULE = `sql = "SELECT upp`;
const SAMPLE_TOPIC = '/sys/pk1/dev1/thing/event/property/post';
const SAMPLE_PAYLOAD = '{"items":{"temp":{"value":21.5,"time":1700000000000}}}';
const EXPECTED_RECORD = { rule: 'playground', topic: 'out', key: null, headers: {}, value: { dn: 'dev1', t: 21.5 } };
// The live sample: an integration-channel request (the MQTT source's topics), one entry.
const TAP_FILTER = 'sys/+/integration/measurepoint/post';
const LIVE_TOPIC = 'sys/pk1/integration/measurepoint/post';
const LIVE_PAYLOAD = '{"id":"7","version":"1.0","params":[{"deviceKey":"live7","measurepoints":{"temp":7},"time":1700000000000}],"method":"integration.measurepoint.post"}';
const LIVE_RULE = 'sql = "SELECT deviceKey AS dn, measurepoints.temp AS t FROM \\"sys/+/integration/measurepoint/post\\""\n[[actions]]\ntopic = "out"\n';

/// A failed expectation: what was wanted, what was there.
class Expectation extends Error {
    constructor(expected, got) {
        super(`expected ${expected}`);
        this.expected = expected;
        this.got = got;
    }
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

/// Polls `probe` (returning `{ok, got}`) until it is ok; an Expectation after `timeout`.
async function eventually(expected, probe, timeout = TIMEOUT) {
    const deadline = Date.now() + timeout;
    let last = { ok: false, got: '(not checked yet)' };
    for (;;) {
        try {
            last = await probe();
        } catch (e) {
            last = { ok: false, got: `error: ${String(e.message).split('\n')[0]}` };
        }
        if (last.ok) return last;
        if (Date.now() >= deadline) throw new Expectation(`${expected} (within ${timeout / 1000} s)`, last.got);
        await sleep(POLL_MS);
    }
}

const show = s => (s === null || s === undefined ? '(none)' : JSON.stringify(s));

fs.mkdirSync(ARTIFACTS, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);

// What the page did, for the failure report and the token check.
const urls = [];
const pageErrors = [];
page.on('framenavigated', f => f === page.mainFrame() && urls.push(f.url()));
page.on('request', r => urls.push(r.url()));
page.on('console', m => m.type() === 'error' && pageErrors.push(`console: ${m.text()}`));
page.on('pageerror', e => pageErrors.push(`page error: ${e.message}`));

const watchdog = setTimeout(() => {
    console.error(`console.mjs: FAILED: the script did not finish within ${SCRIPT_TIMEOUT / 1000} s`);
    process.exit(1);
}, SCRIPT_TIMEOUT);

const $ = sel => page.locator(sel);
const tid = id => page.locator(`[data-testid=${id}]`);

/// The visible text of the first element matching `loc`, or null when there is none.
async function textOf(loc) {
    if ((await loc.count()) === 0) return null;
    return await loc.first().innerText({ timeout: 2000 });
}

/// `sel`'s text, waited for until `pred(text)` holds.
async function waitText(loc, expected, pred) {
    return (await eventually(expected, async () => {
        const t = await textOf(loc);
        return { ok: t !== null && pred(t), got: t === null ? '(no such element)' : show(t), text: t };
    })).text;
}

/// The text of a rules-table cell without its toggle's label.
async function cellText(row, col) {
    const cell = row.locator(`[data-col=${col}]`);
    if ((await cell.count()) === 0) return null;
    return await cell.first().evaluate(el => {
        const c = el.cloneNode(true);
        c.querySelectorAll('[data-testid=toggle]').forEach(t => t.remove());
        return (c.innerText ?? c.textContent).trim();
    });
}

async function waitCell(row, col, want) {
    await eventually(`the [data-col=${col}] cell to read ${show(want)}`, async () => {
        const t = await cellText(row, col);
        return { ok: t !== null && t.toLowerCase() === want, got: t === null ? '(no such row or cell)' : show(t) };
    });
}

async function waitValue(loc, expected, pred) {
    return (await eventually(expected, async () => {
        const v = await loc.inputValue({ timeout: 2000 });
        return { ok: pred(v), got: show(v), v };
    })).v;
}

/// The output's records: every non-empty line of its text parsed as JSON.
async function outputRecords() {
    const text = (await textOf(tid('output'))) ?? '';
    const lines = text.split('\n').map(l => l.trim()).filter(Boolean);
    return { text, records: lines.map(l => { try { return JSON.parse(l); } catch { return { unparsed: l }; } }) };
}

/// The data-rule of every row of the rules table.
async function ruleRows() {
    return await $('[data-testid=rules-table] tr[data-rule]').evaluateAll(rows => rows.map(r => r.getAttribute('data-rule')));
}

function tokenLeak() {
    return urls.find(u => u.includes(TOKEN) || u.includes(WRONG_TOKEN)) ?? null;
}

function noTokenInUrls() {
    const leak = tokenLeak();
    if (leak) throw new Expectation('no URL (page or request) to contain the token', leak);
    const now = page.url();
    if (now.includes(TOKEN) || now.includes(WRONG_TOKEN)) throw new Expectation('the page URL not to contain the token', now);
}

async function publish(topic, payload) {
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(MQTT_PORT), '-q', '1', '-t', topic, '-m', payload], { timeout: 10_000 });
}

let stepNo = 0;
async function step(name, fn) {
    stepNo += 1;
    const n = String(stepNo).padStart(2, '0');
    const started = Date.now();
    try {
        await fn();
        await page.screenshot({ path: path.join(ARTIFACTS, `${n}-${name}.png`), fullPage: true });
    } catch (e) {
        await fail(name, e);
    }
    console.log(`console.mjs: ok ${n} ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

async function fail(name, e) {
    clearTimeout(watchdog);
    const shot = path.join(ARTIFACTS, 'failure.png');
    await page.screenshot({ path: shot, fullPage: true }).catch(err => console.error(`(no screenshot: ${err.message})`));
    const status = await textOf(tid('status')).catch(err => `(unreadable: ${err.message})`);
    const lines = [`console.mjs: FAILED at step ${stepNo} ${name}`];
    if (e instanceof Expectation) {
        lines.push(`  expected: ${e.expected}`, `  got:      ${e.got}`);
    } else {
        lines.push(`  error:    ${e && e.stack ? e.stack : e}`);
    }
    lines.push(`  status:   ${status === null ? '(no [data-testid=status])' : show(status)}`, `  page:     ${page.url()}`, `  screenshot: ${shot}`);
    for (const err of pageErrors.slice(-10)) lines.push(`  ${err}`);
    // Without the terminal colours of Playwright's call logs.
    console.error(lines.join('\n').replace(/\x1b\[[0-9;]*m/g, ''));
    await browser.close().catch(() => {});
    process.exit(1);
}

// The diagnostics `sluice check` prints for `text` as the file playground.toml: the lines after
// its path (`1:15: message`, the source line, the caret line), without the error count.
async function checkOutput(text) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-console-check-'));
    try {
        const file = path.join(dir, 'playground.toml');
        fs.writeFileSync(file, text);
        const r = await run(SLUICE_BIN, ['check', file]).then(
            ok => ok,
            err => err,
        );
        const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
        return out.split('\n').filter(l => l.trim() && !/^\d+ error\(s\)$/.test(l.trim())).map(l => l.replace(/^.*playground\.toml:(?=\d+:\d+:)/, '').trimEnd());
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

await step('bad-token', async () => {
    await page.goto(`${URL_BASE}/ui/`);
    await tid('token-input').fill(WRONG_TOKEN);
    await tid('token-save').click();
    await waitText(tid('status'), '[data-testid=status] to contain "invalid token"', t => /invalid token/i.test(t));
    noTokenInUrls();
});

await step('rules-list', async () => {
    await tid('token-input').fill(TOKEN);
    await tid('token-save').click();
    const row = $('[data-testid=rules-table] tr[data-rule="temps"]');
    await row.waitFor({ state: 'visible' }).catch(async () => {
        throw new Expectation('a visible row tr[data-rule="temps"] in [data-testid=rules-table]', `rows: ${show(await ruleRows())}`);
    });
    await waitCell(row, 'enabled', 'enabled');
    await eventually('the [data-col=matched] cell to hold a number (a rate per second, e.g. 0.0)', async () => {
        const t = await cellText(row, 'matched');
        return { ok: t !== null && /^\d+(\.\d+)?(\s*\/\s*s)?$/.test(t) && Number.isFinite(parseFloat(t)), got: show(t) };
    });
    noTokenInUrls();
});

await step('compile-error', async () => {
    await tid('nav-playground').click();
    await tid('editor').fill(BAD_RULE);
    const caret = /^[ \t]*(\|[ \t]*)?\^+[ \t]*$/m;
    const text = await waitText(tid('diagnostics'), '[data-testid=diagnostics] to show "1:<col>: <message>" and a caret line', t => /(^|\D)1:\d+:\s*\S/.test(t) && caret.test(t));
    if (SLUICE_BIN) {
        const want = await checkOutput(BAD_RULE);
        const have = (await textOf(tid('diagnostics'))).split('\n').map(l => l.trimEnd());
        const [message, ...snippet] = want;
        const ok = message && have.some(l => l.endsWith(message)) && snippet.every(s => have.includes(s));
        if (!ok) throw new Expectation(`the diagnostics of \`sluice check\`: ${show(want.join('\n'))}`, show(text));
    }
});

await step('completion', async () => {
    const editor = tid('editor');
    // All but the last letter at once, the last one typed: the cursor ends at the text's end.
    await editor.fill(COMPLETION_RULE.slice(0, -1));
    await editor.press('End');
    await editor.pressSequentially(COMPLETION_RULE.slice(-1));
    await tid('completions').waitFor({ state: 'visible' }).catch(() => { throw new Expectation('[data-testid=completions] to become visible', 'hidden or missing'); });
    const item = tid('completions').locator('[data-function=upper]');
    await eventually('an item [data-function=upper] in the completions, with a doc text', async () => {
        if ((await item.count()) === 0) {
            return { ok: false, got: `completions: ${show(await textOf(tid('completions')))}` };
        }
        const text = (await item.first().innerText()) + ' ' + ((await item.first().getAttribute('title')) ?? '');
        const doc = text.replace(/upper/gi, '').replace(/[^A-Za-z]/g, '');
        return { ok: doc.length >= 3, got: show(text) };
    });
});

await step('run-seed-sample', async () => {
    await tid('editor').fill(GOOD_RULE);
    await $('[data-testid=diagnostics][data-ok="true"]').waitFor({ state: 'attached' }).catch(async () => {
        throw new Expectation('[data-testid=diagnostics] with data-ok="true"', `data-ok=${show(await tid('diagnostics').getAttribute('data-ok').catch(() => null))}, text ${show(await textOf(tid('diagnostics')))}`);
    });
    const select = tid('sample-select');
    const options = await eventually('an option of [data-testid=sample-select] whose text contains "property/post"', async () => {
        const all = await select.locator('option').allInnerTexts();
        return { ok: all.some(o => o.includes('property/post')), got: show(all), all };
    });
    await select.selectOption({ index: options.all.findIndex(o => o.includes('property/post')) });
    await waitValue(tid('sample-topic'), '[data-testid=sample-topic] filled with the sample\'s topic', v => v.includes('property/post'));
    await waitValue(tid('sample-payload'), '[data-testid=sample-payload] filled with the sample\'s payload', v => v.trim() !== '');
    await tid('sample-topic').fill(SAMPLE_TOPIC);
    await tid('sample-payload').fill(SAMPLE_PAYLOAD);
    await tid('run').click();
    await eventually(`[data-testid=output] to hold exactly the record ${JSON.stringify(EXPECTED_RECORD)}`, async () => {
        const { text, records } = await outputRecords();
        return { ok: records.length === 1 && isDeepStrictEqual(records[0], EXPECTED_RECORD), got: show(text) };
    });
});

await step('live-sample', async () => {
    await tid('tap-filter').fill(TAP_FILTER);
    await tid('tap-start').click();
    const sample = tid('tap-samples').locator('li', { hasText: 'live7' });
    // The tap may start listening a moment after the click: publish again until the sample
    // shows (each wait is on the list, bounded by the step's deadline).
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
        await publish(LIVE_TOPIC, LIVE_PAYLOAD);
        const shown = await sample.first().waitFor({ state: 'visible', timeout: Math.min(3000, Math.max(1, deadline - Date.now())) }).then(() => true, () => false);
        if (shown) break;
        if (Date.now() >= deadline) {
            throw new Expectation(`a [data-testid=tap-samples] li containing "live7" (within ${TIMEOUT / 1000} s of publishing to ${LIVE_TOPIC})`, `tap samples: ${show(await textOf(tid('tap-samples')))}`);
        }
    }
    await sample.first().click();
    await waitValue(tid('sample-topic'), `[data-testid=sample-topic] to be ${LIVE_TOPIC}`, v => v.trim() === LIVE_TOPIC);
    await waitValue(tid('sample-payload'), `[data-testid=sample-payload] to hold ${LIVE_PAYLOAD}`, v => {
        try {
            return isDeepStrictEqual(JSON.parse(v), JSON.parse(LIVE_PAYLOAD));
        } catch {
            return false;
        }
    });
    await tid('editor').fill(LIVE_RULE);
    await $('[data-testid=diagnostics][data-ok="true"]').waitFor({ state: 'attached' });
    await tid('run').click();
    await eventually('[data-testid=output] to hold a record with "dn":"live7" and "t":7', async () => {
        const { text, records } = await outputRecords();
        return { ok: records.some(r => r && r.value && r.value.dn === 'live7' && r.value.t === 7), got: show(text) };
    });
});

await step('save', async () => {
    const text = await tid('editor').inputValue();
    await tid('rule-name').fill('lab');
    await tid('save').click();
    const file = path.join(RULES_DIR, 'lab.toml');
    await eventually(`${file} to hold the editor's text ${show(text)}`, async () => {
        const have = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
        return { ok: have === text, got: have === null ? '(no such file)' : show(have) };
    });
    await tid('nav-rules').click();
    await $('[data-testid=rules-table] tr[data-rule="lab"]').waitFor({ state: 'visible' }).catch(async () => {
        throw new Expectation('a visible row tr[data-rule="lab"] in [data-testid=rules-table]', `rows: ${show(await ruleRows())}`);
    });
});

await step('disable', async () => {
    const row = $('[data-testid=rules-table] tr[data-rule="lab"]');
    await row.locator('[data-testid=toggle]').click();
    await waitCell(row, 'enabled', 'disabled');
    const file = path.join(RULES_DIR, 'lab.toml');
    await eventually(`${file} to contain a line "enabled = false"`, async () => {
        const have = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
        return { ok: have !== null && /^enabled = false[ \t]*$/m.test(have), got: show(have) };
    });
});

// Shadow, promote, roll back: a rule on the integration channel, saved, then a candidate that
// doubles the temperature runs beside it while requests flow.
const METER_RULE = LIVE_RULE;
const METER_CANDIDATE = LIVE_RULE.replace('measurepoints.temp AS t', 'measurepoints.temp * 2 AS t');
const METER_FILE = path.join(RULES_DIR, 'meter.toml');
const fileText = () => (fs.existsSync(METER_FILE) ? fs.readFileSync(METER_FILE, 'utf8') : null);

await step('shadow', async () => {
    await tid('nav-playground').click();
    await tid('editor').fill(METER_RULE);
    await $('[data-testid=diagnostics][data-ok="true"]').waitFor({ state: 'attached' });
    await tid('rule-name').fill('meter');
    await tid('save').click();
    await eventually(`${METER_FILE} to hold the saved rule`, async () => ({ ok: fileText() === METER_RULE, got: show(fileText()) }));
    await tid('editor').fill(METER_CANDIDATE);
    await $('[data-testid=diagnostics][data-ok="true"]').waitFor({ state: 'attached' });
    await tid('shadow-start').click();
    await tid('shadow').waitFor({ state: 'visible' });
    const num = async (id) => Number(await textOf(tid(id)));
    const deadline = Date.now() + TIMEOUT;
    let n = 0;
    for (;;) {
        n += 1;
        await publish(LIVE_TOPIC, LIVE_PAYLOAD.replace('"temp":7', `"temp":${n}`));
        const ok = await eventually('[data-testid=shadow-differing] to count a message', async () => ({ ok: (await num('shadow-differing')) >= 1, got: await textOf(tid('shadow-differing')) }), 1500).then(() => true, () => false);
        if (ok) break;
        if (Date.now() >= deadline) throw new Expectation('a differing message counted by the shadow run', `compared ${await textOf(tid('shadow-compared'))}, differing ${await textOf(tid('shadow-differing'))}`);
    }
    const examples = await textOf(tid('shadow-examples'));
    if (!/"t":\d+/.test(examples ?? '') || !examples.includes('candidate')) throw new Expectation('example diffs with both versions\' records', show(examples));
    if (fileText() !== METER_RULE) throw new Expectation('the rule file unchanged while the shadow runs', show(fileText()));
});

await step('promote', async () => {
    await tid('shadow-promote').click();
    await eventually(`${METER_FILE} to hold the candidate`, async () => ({ ok: fileText() === METER_CANDIDATE, got: show(fileText()) }));
});

await step('rollback', async () => {
    await tid('nav-rules').click();
    const row = $('[data-testid=rules-table] tr[data-rule="meter"]');
    await row.waitFor({ state: 'visible' });
    await row.locator('[data-col=name]').click();
    const first = tid('history').locator('li[data-action="create"]');
    await first.waitFor({ state: 'visible' }).catch(async () => {
        throw new Expectation('the saved versions of meter, with its create version', show(await textOf(tid('history'))));
    });
    if ((await tid('history').locator('li[data-action="promote"]').count()) !== 1) throw new Expectation('a promote version in the history', show(await textOf(tid('history'))));
    await first.locator('[data-testid=rollback]').click();
    await eventually(`${METER_FILE} to hold the rule as first saved`, async () => ({ ok: fileText() === METER_RULE, got: show(fileText()) }));
    await tid('history').locator('li[data-action="rollback"]').waitFor({ state: 'visible' });
});

await step('integration', async () => {
    await publish(LIVE_TOPIC, '{"id": "bad-1", "params": [');
    await tid('nav-integration').click();
    const ok = tid('replies').locator('tr[data-code="200"]');
    const bad = tid('replies').locator('tr[data-code="1203"]');
    await eventually('reply codes 200 and 1203 in [data-testid=replies]', async () => ({ ok: (await ok.count()) === 1 && (await bad.count()) === 1, got: show(await textOf(tid('replies'))) }));
    await eventually('the rejected request in [data-testid=integration-errors]', async () => {
        const t = await textOf(tid('integration-errors'));
        return { ok: t !== null && t.includes('1203') && t.includes(LIVE_TOPIC), got: show(t) };
    });
});

await step('api-down', async () => {
    process.kill(KILL_PID, 'SIGKILL');
    await waitText(tid('status'), '[data-testid=status] to contain "unreachable" once Sluice is killed', t => /unreachable/i.test(t));
    noTokenInUrls();
});

clearTimeout(watchdog);
await browser.close();
console.log(`console.mjs: all ${stepNo} steps ok; screenshots in ${ARTIFACTS}`);
