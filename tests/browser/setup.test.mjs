// The hosted setup page in a real browser: headless Chromium (playwright-core, the system's
// /usr/bin/chromium) against a running `wagate serve --sandbox`, whose page runs the simulated
// Meta sign-in. Redirect targets are a small HTTP listener started here that records each query.
//
// Needs WAGATE_URL (http://127.0.0.1:<port>), WAGATE_API_KEY and WAGATE_EMULATOR_URL; run.sh
// beside this file starts wagate and sets them.
//
// The last tests drive the page's real path, Meta's Embedded Signup v4: they start a second wagate
// (`wagate serve`, the binary run.sh uses: WAGATE_BIN or target/debug/wagate, relative to the
// repository root) without the simulated sign-in, against the same Graph emulator, and the browser
// gets a stand-in for Meta: connect.facebook.net/en_US/sdk.js records what FB.init and FB.login
// were called with, and FB.login's window is an https://www.facebook.com frame that posts the
// WA_EMBEDDED_SIGNUP message a test chose. Nothing leaves the machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { chromium } from 'playwright-core';

const BASE = process.env.WAGATE_URL;
const KEY = process.env.WAGATE_API_KEY;
const EMULATOR = process.env.WAGATE_EMULATOR_URL;
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const OUT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'out');
for (const [name, value] of Object.entries({ WAGATE_URL: BASE, WAGATE_API_KEY: KEY, WAGATE_EMULATOR_URL: EMULATOR })) {
  if (!value) throw new Error(`${name} is not set (run tests/browser/run.sh)`);
}

// ---- the platform's redirect targets ----------------------------------------------------------
const hits = [];
let receiver;
let receiverUrl;
function startReceiver() {
  receiver = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://receiver');
    hits.push({ path: url.pathname, params: Object.fromEntries(url.searchParams) });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>platform</title><h1 id="landed">${url.pathname}</h1>`);
  });
  return new Promise((resolve) => receiver.listen(0, '127.0.0.1', () => {
    receiverUrl = `http://127.0.0.1:${receiver.address().port}`;
    resolve();
  }));
}
function landing(url) {
  const u = new URL(url);
  return { path: u.pathname, params: Object.fromEntries(u.searchParams) };
}

// ---- wagate and the emulator ------------------------------------------------------------------
async function api(method, p, body) {
  const response = await fetch(`${BASE}/platform/v1${p}`, {
    method,
    headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

// Numbers made up for this run, served by the emulator, unregistered until the signup.
const run = String(Date.now() % 1e7).padStart(7, '0');
function number(n) {
  return {
    phone_number_id: `1${run}000${n}`.padEnd(15, '0'),
    business_account_id: `2${run}000${n}`.padEnd(15, '0'),
    display_phone_number: `+1 555-${run.slice(0, 3)}-${run.slice(3, 6)}${n}`,
  };
}
const A = number(1);
const B = number(2);
const C = number(3); // connected through the Facebook SDK path
function e164(display) {
  return '+' + display.replace(/\D/g, '');
}

let browser;
let customerId;
let page;

before(async () => {
  await startReceiver();
  for (const n of [A, B, C]) {
    const response = await fetch(`${EMULATOR}/_sandbox/numbers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...n, access_token: `sandbox-token-${n.phone_number_id}`, registered: false }),
    });
    assert.equal(response.status, 201, await response.text());
  }
  const customer = await api('POST', '/customers', { customer: { name: `Browser test ${run}` } });
  assert.equal(customer.status, 201, JSON.stringify(customer.body));
  customerId = customer.body.data.id;

  fs.mkdirSync(OUT, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wagate-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 900, height: 1000 },
    locale: 'en-US',
  });
  page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(10_000);
  await standInForMeta(page);
});

after(async () => {
  await browser?.close();
  receiver?.close();
  await stopFacebookWagate();
});

async function newLink(fields) {
  const response = await api('POST', `/customers/${customerId}/setup_links`, {
    setup_link: {
      success_redirect_url: `${receiverUrl}/ok?from=wagate`,
      failure_redirect_url: `${receiverUrl}/fail`,
      ...fields,
    },
  });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body.data;
}

async function signInSimulated(n) {
  await page.locator('#sim-phone-number-id').fill(n.phone_number_id);
  await page.locator('#sim-waba-id').fill(n.business_account_id);
  await page.locator('#simulated-connect').click();
}

let first;

test('a new number connects through the page and lands on the success URL', async () => {
  first = await newLink({ language: 'en', theme_config: { primary_color: '#7c3aed', card_color: '#fdf4ff' } });
  const response = await page.goto(first.url);
  assert.equal(response.status(), 200);
  await page.locator('h1#title').waitFor({ state: 'visible' });
  assert.equal(await page.locator('h1#title').innerText(), 'Connect your WhatsApp number');
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');

  // The theme is applied.
  const button = page.locator('#simulated-connect');
  assert.ok(await button.isVisible());
  assert.equal(await button.evaluate((el) => getComputedStyle(el).backgroundColor), 'rgb(124, 58, 237)');
  assert.equal(await page.locator('#setup').evaluate((el) => getComputedStyle(el).backgroundColor), 'rgb(253, 244, 255)');

  // Both types are offered, with their limits; the warning is visible.
  const dedicated = page.locator('label.option[data-type="dedicated"]');
  const coexistence = page.locator('label.option[data-type="coexistence"]');
  assert.match(await dedicated.innerText(), /Up to 1000 msg\/s, API only/);
  assert.match(await coexistence.innerText(), /5 msg\/s, keeps the WhatsApp Business app/);
  const warning = page.locator('#display-name-warning');
  assert.ok(await warning.isVisible());
  assert.match(await warning.innerText(), /Display name only/);
  assert.ok(await page.locator('#simulated-signup').isVisible());
  assert.equal(await page.locator('script[src*="facebook"]').count(), 0, 'no Facebook SDK in simulated mode');

  // Nothing chosen yet: the page says what to do and stays.
  await signInSimulated(A);
  const error = page.locator('#error');
  await error.waitFor({ state: 'visible' });
  assert.equal(await error.innerText(), 'Choose how you want to connect first.');
  assert.equal(page.url(), first.url);

  await dedicated.click();
  assert.ok(await page.locator('input[value="dedicated"]').isChecked());
  assert.ok(await error.isHidden(), 'choosing clears the message');
  await page.screenshot({ path: path.join(OUT, 'setup.png'), fullPage: true });

  await Promise.all([page.waitForURL(`${receiverUrl}/ok**`), signInSimulated(A)]);
  assert.equal(await page.locator('#landed').innerText(), '/ok');
  const landed = landing(page.url());
  assert.deepEqual(landed.params, {
    from: 'wagate',
    setup_link_id: first.id,
    status: 'completed',
    phone_number_id: A.phone_number_id,
    business_account_id: A.business_account_id,
    display_phone_number: e164(A.display_phone_number),
  });
  assert.ok(page.url().includes(`display_phone_number=${encodeURIComponent(e164(A.display_phone_number))}`));
  assert.deepEqual(hits.filter((h) => h.path === '/ok').at(-1), landed);

  // wagate has the number, for this customer; the emulator registered it.
  const connected = await api('GET', `/whatsapp/phone_numbers/${A.phone_number_id}`);
  assert.equal(connected.status, 200);
  assert.equal(connected.body.data.customer_id, customerId);
  assert.equal(connected.body.data.is_coexistence, false);
  const numbers = await (await fetch(`${EMULATOR}/_sandbox/numbers`)).json();
  assert.equal(numbers.data.find((n) => n.phone_number_id === A.phone_number_id).registered, true);
});

test('a used link explains and forwards with already_used', async () => {
  const response = await page.goto(first.url);
  assert.equal(response.status(), 410);
  assert.equal(await page.locator('h1#title').innerText(), 'This setup link was already used');
  assert.ok(await page.locator('#continue').isVisible());
  await page.waitForURL(`${receiverUrl}/fail**`, { timeout: 10_000 });
  assert.deepEqual(landing(page.url()).params, { setup_link_id: first.id, error_code: 'already_used' });
});

let reconnect;

test('a reconnect link signed in with another number fails and changes nothing', async () => {
  reconnect = await newLink({ reconnect_phone_number: e164(A.display_phone_number) });
  await page.goto(reconnect.url);
  // Locked to the number's type: the only option, already chosen.
  assert.equal(await page.locator('label.option').count(), 1);
  assert.ok(await page.locator('input[value="dedicated"]').isChecked());
  await Promise.all([page.waitForURL(`${receiverUrl}/fail**`), signInSimulated(B)]);
  assert.deepEqual(landing(page.url()).params, { setup_link_id: reconnect.id, error_code: 'phone_verification_failed' });
  assert.equal((await api('GET', `/whatsapp/phone_numbers/${B.phone_number_id}`)).status, 404);
  assert.equal((await api('GET', `/whatsapp/phone_numbers/${A.phone_number_id}`)).status, 200);
  const links = await api('GET', `/customers/${customerId}/setup_links?status=active`);
  assert.equal(links.body.data[0].id, reconnect.id, 'the link stays usable');
  assert.equal(links.body.data[0].whatsapp_setup_error, 'phone_verification_failed');
});

test('a revoked link explains and forwards with link_expired', async () => {
  const revoked = await api('PATCH', `/customers/${customerId}/setup_links/${reconnect.id}`, { setup_link: { status: 'revoked' } });
  assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
  const response = await page.goto(reconnect.url);
  assert.equal(response.status(), 410);
  assert.equal(await page.locator('h1#title').innerText(), 'This setup link is no longer valid');
  await page.waitForURL(`${receiverUrl}/fail**`, { timeout: 10_000 });
  assert.deepEqual(landing(page.url()).params, { setup_link_id: reconnect.id, error_code: 'link_expired' });
});

test('an Arabic link renders right to left', async () => {
  const link = await newLink({ language: 'ar', allowed_connection_types: ['coexistence'] });
  await page.goto(link.url);
  assert.equal(await page.evaluate(() => document.documentElement.dir), 'rtl');
  assert.equal(await page.locator('#setup').evaluate((el) => getComputedStyle(el).direction), 'rtl');
  assert.equal(await page.locator('h1#title').innerText(), 'اربط رقم واتساب الخاص بك');
  assert.ok(await page.locator('input[value="coexistence"]').isChecked());
  assert.ok(await page.locator('#display-name-warning').isVisible());
  await page.screenshot({ path: path.join(OUT, 'setup-ar.png'), fullPage: true });
});

// The setup-links seed's "Full example": a dedicated link that provisions a US number. Under
// `serve --sandbox` the default project's Twilio account is the emulator's Twilio double, so the
// number is bought live; the emulator plays Meta's phone step and texts the code to the number.
test("the seed's Full example provisions a number, shows Meta's code and connects it", async () => {
  const customer = await api('POST', '/customers', { customer: { name: `Provisioned ${run}` } });
  assert.equal(customer.status, 201, JSON.stringify(customer.body));
  const owner = customer.body.data.id;
  const created = await api('POST', `/customers/${owner}/setup_links`, {
    setup_link: {
      success_redirect_url: `${receiverUrl}/onboarding/complete`,
      failure_redirect_url: `${receiverUrl}/onboarding/error`,
      allowed_connection_types: ['dedicated'],
      provision_phone_number: true,
      phone_number_country_isos: ['US'],
      theme_config: { primary_color: '#10b981', background_color: '#ffffff', text_color: '#111827' },
    },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const link = created.body.data;
  assert.equal(link.provisioned_phone_number, null);

  const response = await page.goto(link.url);
  assert.equal(response.status(), 200);
  // Dedicated is the only type, so it is chosen and a number is reserved at once.
  assert.ok(await page.locator('input[value="dedicated"]').isChecked());
  const shown = page.locator('#provisioned-number');
  await page.waitForFunction(() => /^\+1 /.test(document.getElementById('provisioned-number').textContent));
  const display = await shown.innerText();
  const instruction = page.locator('#provisioned-instruction');
  assert.ok(await instruction.isVisible());
  assert.match(await instruction.innerText(), /add a new phone number/);
  assert.match(await instruction.innerText(), /Display name only/);
  assert.ok(await page.locator('#provisioned-waiting').isVisible());
  assert.ok(await page.locator('#simulated-signup').isHidden(), 'the ID fields give way to the phone step');

  const links = await api('GET', `/customers/${owner}/setup_links`);
  const reserved = links.body.data[0].provisioned_phone_number;
  assert.equal(reserved.status, 'reserved');
  assert.equal(reserved.display_number, display);
  assert.equal(reserved.country_iso, 'US');
  assert.equal(reserved.country_dial_code, '1');

  // Meta's phone step: the number as the customer types it, then the code, shown live.
  assert.equal(await page.locator('#sim-phone-number').inputValue(), reserved.phone_number);
  await page.locator('#sim-send-code').click();
  const code = page.locator('#provisioned-code');
  await code.waitFor({ state: 'visible', timeout: 15_000 });
  const digits = await code.innerText();
  assert.match(digits, /^\d{6}$/);
  assert.ok(await page.locator('#provisioned-waiting').isHidden());
  await page.screenshot({ path: path.join(OUT, 'setup-provisioned.png'), fullPage: true });

  await page.locator('#sim-code').fill(digits);
  await Promise.all([page.waitForURL(`${receiverUrl}/onboarding/complete**`), page.locator('#sim-verify').click()]);
  const landed = landing(page.url());
  assert.equal(landed.params.setup_link_id, link.id);
  assert.equal(landed.params.status, 'completed');
  assert.equal(landed.params.provisioned_phone_number_id, reserved.id);
  assert.equal(landed.params.display_phone_number, reserved.phone_number);

  // The number is the customer's, and the pool entry is in use.
  const connected = await api('GET', `/whatsapp/phone_numbers/${landed.params.phone_number_id}`);
  assert.equal(connected.status, 200);
  assert.equal(connected.body.data.customer_id, owner);
  assert.equal(connected.body.data.is_coexistence, false);
  const after = await api('GET', `/customers/${owner}/setup_links`);
  assert.equal(after.body.data[0].status, 'used');
  assert.equal(after.body.data[0].provisioned_phone_number.status, 'in_use');
});

// ---- Meta's Embedded Signup v4, through Facebook's SDK --------------------------------------
// A stand-in for Meta in the browser. The SDK records FB.init's and FB.login's arguments (in
// window.__meta, and here in metaLog, which outlives the page's navigation to the redirect
// target); FB.login plays window.__metaPlan: its window (an https://www.facebook.com frame)
// posts plan.message as Meta does (a JSON string), the SDK then posts plan.forged from the page's
// own origin (which the page must ignore), and answers the login callback with plan.code (or
// without a code). plan.callbackFirst answers the callback before the window's message.
const FAKE_SDK = `(function () {
  var calls = window.__meta = { init: [], login: [] };
  function record(kind, options) {
    var copy = JSON.parse(JSON.stringify(options));
    calls[kind].push(copy);
    if (typeof window.__wagateMetaRecord === 'function') window.__wagateMetaRecord(kind, copy);
  }
  window.FB = {
    init: function (options) { record('init', options); },
    login: function (callback, options) {
      record('login', options);
      var plan = window.__metaPlan || {};
      function answer() {
        callback(plan.code ? { status: 'connected', authResponse: { code: plan.code } }
                           : { status: 'unknown', authResponse: null });
      }
      if (plan.callbackFirst) answer();
      if (!plan.message) { if (!plan.callbackFirst) answer(); return; }
      window.addEventListener('message', function fromMeta(event) {
        if (event.origin !== 'https://www.facebook.com') return;
        window.removeEventListener('message', fromMeta);
        if (plan.forged) window.postMessage(JSON.stringify(plan.forged), '*');
        if (!plan.callbackFirst) setTimeout(answer, 50);
      });
      var frame = document.createElement('iframe');
      frame.hidden = true;
      frame.src = 'https://www.facebook.com/v24.0/dialog/oauth#' + encodeURIComponent(JSON.stringify(plan.message));
      document.body.appendChild(frame);
    }
  };
  if (typeof window.fbAsyncInit === 'function') window.fbAsyncInit();
})();`;
const FAKE_WINDOW = `<!doctype html><title>Meta</title><script>
  parent.postMessage(decodeURIComponent(location.hash.slice(1)), '*');
</script>`;

const metaLog = [];
async function standInForMeta(p) {
  await p.exposeBinding('__wagateMetaRecord', (_source, kind, options) => { metaLog.push({ kind, options }); });
  await p.route('https://connect.facebook.net/**', (route) => route.fulfill({
    status: 200,
    headers: { 'content-type': 'application/javascript', 'access-control-allow-origin': '*' },
    body: FAKE_SDK,
  }));
  await p.route('https://www.facebook.com/**', (route) => route.fulfill({
    status: 200,
    headers: { 'content-type': 'text/html; charset=utf-8' },
    body: FAKE_WINDOW,
  }));
}

// A second wagate with the Facebook SDK path (no simulated sign-in), on the same emulator: the
// emulator's app (ID and public sandbox secret) exchanges `sandbox-code-<phone_number_id>`.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SANDBOX_APP_ID = '900000000000001';
const CONFIG_ID = '4400000000000001';
let fb = null;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startFacebookWagate() {
  if (fb) return fb;
  const configured = process.env.WAGATE_BIN || 'target/debug/wagate';
  const bin = path.isAbsolute(configured) ? configured : path.join(ROOT, configured);
  assert.ok(fs.existsSync(bin), `no wagate binary at ${bin} (set WAGATE_BIN to an absolute path)`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'wagate-browser-fb-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WAGATE__')));
  Object.assign(env, {
    WAGATE__SERVER__LISTEN: `127.0.0.1:${port}`,
    WAGATE__SERVER__PUBLIC_URL: url,
    WAGATE__LOG__LEVEL: 'warn',
    WAGATE__SECURITY__BOOTSTRAP_KEY_FILE: path.join(work, 'api-key'),
    WAGATE__GRAPH__BASE_URL: EMULATOR,
    WAGATE__META__APP_ID: SANDBOX_APP_ID,
    WAGATE__META__APP_SECRET: 'sandbox-app-secret',
    WAGATE__META__VERIFY_TOKEN: 'browser-test-verify-token',
    WAGATE__META__EMBEDDED_SIGNUP_CONFIG_ID: CONFIG_ID,
    WAGATE__ONBOARDING__SIMULATED_SIGNUP: 'false',
    WAGATE__ONBOARDING__GRAPH_VERSION: 'v24.0',
  });
  const child = spawn(bin, ['serve'], { cwd: work, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-8000); });
  fb = { child, work, url, key: null };
  for (let i = 0; i < 300 && !fb.key; i++) {
    assert.equal(child.exitCode, null, `wagate serve exited during start-up:\n${stderr}`);
    const ready = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    const key = fs.existsSync(path.join(work, 'api-key')) && fs.readFileSync(path.join(work, 'api-key'), 'utf8').trim();
    if (ready && key) fb.key = key;
    else await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(fb.key, `wagate serve did not come up:\n${stderr}`);
  return fb;
}

async function stopFacebookWagate() {
  if (!fb) return;
  const { child, work } = fb;
  fb = null;
  if (child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  fs.rmSync(work, { recursive: true, force: true });
}

async function fbApi(method, p, body) {
  const response = await fetch(`${fb.url}/platform/v1${p}`, {
    method,
    headers: { 'x-api-key': fb.key, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function metaCalls() {
  const of = (kind) => metaLog.filter((c) => c.kind === kind).map((c) => c.options);
  return { init: of('init'), login: of('login') };
}
async function plan(value) {
  await page.evaluate((v) => { window.__metaPlan = v; }, value);
}

// Embedded Signup v4's launch parameters: the version is the login configuration's, so `extras`
// holds no `version` and no sessionInfoVersion; coexistence adds featureType (Meta's coexistence
// page keeps sessionInfoVersion beside it).
const V4_EXTRAS = { setup: {} };
const V4_COEXISTENCE_EXTRAS = { setup: {}, featureType: 'whatsapp_business_app_onboarding', sessionInfoVersion: '3' };
function assertV4Login(options, extras) {
  assert.deepEqual(options, {
    config_id: CONFIG_ID,
    response_type: 'code',
    override_default_response_type: true,
    extras,
  });
  assert.ok(!('version' in options.extras), 'v4 is chosen by the configuration, not extras.version');
}

let fbLink;
let fbCustomer;

test("Meta's window reporting an error, a cancel or no number leaves the link usable (Embedded Signup v4)", async () => {
  await startFacebookWagate();
  const customer = await fbApi('POST', '/customers', { customer: { name: `Facebook SDK ${run}` } });
  assert.equal(customer.status, 201, JSON.stringify(customer.body));
  fbCustomer = customer.body.data.id;
  const created = await fbApi('POST', `/customers/${fbCustomer}/setup_links`, {
    setup_link: { success_redirect_url: `${receiverUrl}/fb/ok`, failure_redirect_url: `${receiverUrl}/fb/fail`, language: 'en' },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  fbLink = created.body.data;

  metaLog.length = 0;
  const response = await page.goto(fbLink.url);
  assert.equal(response.status(), 200);
  assert.ok(await page.locator('#connect').isVisible());
  assert.equal(await page.locator('#simulated-signup').count(), 0);
  await page.waitForFunction(() => window.__meta && window.__meta.init.length === 1);
  assert.deepEqual(metaCalls().init, [
    { appId: SANDBOX_APP_ID, autoLogAppEvents: true, xfbml: false, version: 'v24.0' },
  ]);

  // Coexistence; the customer reports an error in Meta's window, whose message comes after the
  // login callback: Meta's words replace the generic text.
  await page.locator('label.option[data-type="coexistence"]').click();
  await plan({
    callbackFirst: true,
    message: {
      type: 'WA_EMBEDDED_SIGNUP',
      event: 'CANCEL',
      data: {
        error_message: 'Your verified name violates WhatsApp guidelines. Please edit your verified name and try again.',
        error_code: '524126',
        session_id: 'f34b51dab5e0498',
        timestamp: '1746041036',
      },
    },
  });
  await page.locator('#connect').click();
  const error = page.locator('#error');
  await page.waitForFunction(() => /verified name/.test(document.getElementById('error').textContent));
  assert.equal(await error.innerText(),
    'Your verified name violates WhatsApp guidelines. Please edit your verified name and try again. (524126 · f34b51dab5e0498)');
  assert.ok(await page.locator('#connect').isEnabled(), 'the customer can start again');
  let calls = metaCalls();
  assert.equal(calls.login.length, 1);
  assertV4Login(calls.login[0], V4_COEXISTENCE_EXTRAS);

  // Abandoned at a step: the page's own text.
  await plan({ message: { type: 'WA_EMBEDDED_SIGNUP', event: 'CANCEL', data: { current_step: 'PHONE_NUMBER_SETUP' } } });
  await page.locator('#connect').click();
  await page.waitForFunction(() => /cancelled/.test(document.getElementById('error').textContent));
  assert.equal(await error.innerText(), 'The sign-in was cancelled or closed. Click the button to start again.');

  // Finished without a phone number: nothing is posted, the page says what to do.
  await page.locator('label.option[data-type="dedicated"]').click();
  await plan({
    code: `sandbox-code-${C.phone_number_id}`,
    message: { type: 'WA_EMBEDDED_SIGNUP', event: 'FINISH_ONLY_WABA', data: { waba_id: C.business_account_id } },
  });
  await page.locator('#connect').click();
  await page.waitForFunction(() => /without a phone number/.test(document.getElementById('error').textContent));
  calls = metaCalls();
  assert.equal(calls.login.length, 3);
  assertV4Login(calls.login[1], V4_COEXISTENCE_EXTRAS);
  assertV4Login(calls.login[2], V4_EXTRAS);
  assert.equal(page.url(), fbLink.url);
  const links = await fbApi('GET', `/customers/${fbCustomer}/setup_links?status=active`);
  assert.equal(links.body.data[0].id, fbLink.id, 'the link stays usable');
  assert.equal(links.body.data[0].whatsapp_setup_error, null);
});

test("a dedicated number connects with what Meta's window reported, and with nothing else (Embedded Signup v4)", async () => {
  assert.ok(fbLink, 'runs after the test above');
  metaLog.length = 0;
  await page.goto(fbLink.url);
  await page.waitForFunction(() => window.__meta && window.__meta.init.length === 1);
  await page.locator('label.option[data-type="dedicated"]').click();
  await plan({
    code: `sandbox-code-${C.phone_number_id}`,
    message: {
      type: 'WA_EMBEDDED_SIGNUP',
      event: 'FINISH',
      data: { phone_number_id: C.phone_number_id, waba_id: C.business_account_id, business_id: '3000000000000001' },
    },
    // A look-alike from the page's own origin, after Meta's: ignored.
    forged: { type: 'WA_EMBEDDED_SIGNUP', event: 'FINISH', data: { phone_number_id: B.phone_number_id, waba_id: B.business_account_id } },
  });
  await Promise.all([page.waitForURL(`${receiverUrl}/fb/ok**`), page.locator('#connect').click()]);
  const calls = metaCalls();
  assert.equal(calls.login.length, 1);
  assertV4Login(calls.login[0], V4_EXTRAS);
  assert.deepEqual(landing(page.url()).params, {
    setup_link_id: fbLink.id,
    status: 'completed',
    phone_number_id: C.phone_number_id,
    business_account_id: C.business_account_id,
    display_phone_number: e164(C.display_phone_number),
  });
  const connected = await fbApi('GET', `/whatsapp/phone_numbers/${C.phone_number_id}`);
  assert.equal(connected.status, 200, JSON.stringify(connected.body));
  assert.equal(connected.body.data.customer_id, fbCustomer);
  assert.equal(connected.body.data.is_coexistence, false);
  assert.equal((await fbApi('GET', `/whatsapp/phone_numbers/${B.phone_number_id}`)).status, 404);
});
