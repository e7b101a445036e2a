// The status page (GET / on --admin) in a real headless Chromium, on a real two-replica mesh:
// two redis-servers, each behind an advertising ambassador, and a connecting ambassador whose
// admin port serves the page, all on mDNS over the loopback of the runner's private network
// namespace. The page must load clean and stay on its origin, list both replicas, show a
// replica killed with -9 as down with the reason within 3 s without a reload, never show a TXT
// secret, work from the keyboard and at 360 px, and say when its ambassador stopped answering.
// Screenshots go to .build/artifacts/ (paths in the log).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { browserMissing, launchBrowser } from '../lib/browser.js';
import { haveCommand } from '../lib/netns.js';
import { AmbProc, freePort, isolated, waitFor } from '../robustness/kit.js';

// The functions given to page.evaluate and waitForFunction run in the browser: its globals,
// untyped here (the test build has no DOM library).
declare const document: any;
declare const window: any;
declare const location: any;
declare const getComputedStyle: any;

const skip = isolated || browserMissing() || (haveCommand('redis-server') ? false : 'needs redis-server');
const ARTIFACTS = fileURLToPath(new URL('../../artifacts/', import.meta.url));
const LO = ['--interface', '127.0.0.1', '--health-interval', '300ms'];
const SECRET = 'hunter2-status-page';

/** A redis-server on 127.0.0.1:port, killed by its PID. */
async function startRedis(port: number): Promise<ChildProcess> {
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await waitFor(() => new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  }), { timeoutMs: 10_000, intervalMs: 50, message: `redis-server on ${port}` });
  return p;
}

/** One new connection through the connector: PING, wait for +PONG. */
function ping(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
    const t = setTimeout(() => s.destroy(new Error('timeout')), 3000);
    s.on('data', () => { clearTimeout(t); s.destroy(); resolve(); });
    s.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}

/** The text of the endpoint entry labelled `label` on the page ('' when absent). */
function endpointText(page: Page, label: string): Promise<string> {
  return page.evaluate((l) => [...document.querySelectorAll('li.ep')].find((li: any) => li.querySelector('strong')?.textContent === l)?.textContent ?? '', label);
}

describe('status page in a real browser', { skip }, () => {
  const redis: ChildProcess[] = [];
  const ambs: AmbProc[] = [];
  let connector: AmbProc;
  let browser: Browser;
  let page: Page;
  let origin: string;
  let advertiserOrigin: string;
  let appPort: number;
  const problems: string[] = [];
  const foreign: string[] = [];

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const [r1, r2, admin, advAdmin] = [await freePort(), await freePort(), await freePort(), await freePort()];
    appPort = await freePort();
    redis.push(await startRedis(r1), await startRedis(r2));
    origin = `http://127.0.0.1:${admin}`;
    advertiserOrigin = `http://127.0.0.1:${advAdmin}`;
    for (const [i, port] of [[1, r1], [2, r2]] as const) {
      const adv = new AmbProc([...LO, '--hostname', `replica-${i}`, '--advertise', `redis=${port},txt.replica=${i},txt.password=${SECRET}`,
        ...(i === 2 ? ['--admin', String(advAdmin)] : [])]);
      ambs.push(adv);
    }
    connector = new AmbProc([...LO, '--hostname', 'app', '--connect', `redis=${appPort}`, '--admin', String(admin)]);
    ambs.push(connector);
    const [launched] = await Promise.all([
      launchBrowser(),
      ...ambs.slice(0, 2).map((a) => a.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced', 15_000, 'announced')),
      waitFor(() => connector.logs().filter((l) => l.msg === 'endpoint up').length >= 2 || (!connector.running && Promise.reject(new Error(connector.out))),
        { timeoutMs: 15_000, intervalMs: 20, message: 'both replicas up at the connector' }),
    ]);
    browser = launched as Browser;
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console.error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
      if (!r.url().startsWith(`${origin}/`) && !r.url().startsWith(`${advertiserOrigin}/`)) foreign.push(r.url());
    });
    await page.goto(`${origin}/`);
    // a mark that a reload would lose
    await page.evaluate(() => (window.loadedOnce = true));
  });

  after(async () => {
    await browser?.close().catch(() => {});
    for (const a of ambs) if (a.running) a.signal('SIGKILL');
    for (const r of redis) if (r.exitCode === null && r.signalCode === null) r.kill('SIGKILL');
  });

  test('loads with no console error and no request leaving the admin origin', async () => {
    await page.waitForFunction(() => document.getElementById('live')?.textContent?.includes('live'), null, { timeout: 5000 });
    assert.deepEqual(problems, []);
    assert.deepEqual(foreign, []);
    assert.equal(await page.title(), 'ambassador app.local \u2014 status');
  });

  test('lists both replicas, their evidence and the peers; traffic shows in the sparklines; screenshots', async () => {
    for (const label of ['redis@replica-1', 'redis@replica-2']) {
      await page.waitForFunction((l) => [...document.querySelectorAll('li.ep')].some((li: any) => li.querySelector('strong')?.textContent === l && li.textContent!.includes('\u2713 up')), label, { timeout: 5000 });
      const text = await endpointText(page, label);
      assert.match(text, /from mdns/);
      assert.match(text, /Host probe\u2713 up/, 'the host probe evidence is shown');
      assert.match(text, /RTT [\d.]+ ms/);
    }
    assert.equal(await page.locator('#h-peers + .card tbody tr').count(), 2, 'one peer row per replica ambassador');
    for (let i = 0; i < 20; i++) await ping(appPort);
    // the sparkline labels say "conn/s N/s (peak M)": some M > 0 within two samples
    await page.waitForFunction(() => [...document.querySelectorAll('.spark .lbl')].some((l: any) => /^conn\/s .*\(peak [1-9]/.test(l.textContent ?? '')), null, { timeout: 4000 });
    await page.evaluate(() => window.scrollTo(0, 0));
    const light = `${ARTIFACTS}status-page.png`;
    await page.screenshot({ path: light, fullPage: true });
    const bgLight = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = `${ARTIFACTS}status-page-dark.png`;
    await page.screenshot({ path: dark, fullPage: true });
    const bgDark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'light' });
    assert.notEqual(bgLight, bgDark, 'dark colours from prefers-color-scheme');
    console.log(`# screenshots: ${light} ${dark}`);
  });

  test('the TXT secret of an advertisement never appears in the DOM (connector and advertiser pages)', async () => {
    const html = await page.evaluate(() => document.documentElement.outerHTML);
    assert.ok(!html.includes(SECRET));
    assert.match(html, /password=\[redacted\]/, 'the TXT is shown, redacted');
    const adv = await browser.newPage();
    adv.on('pageerror', (e) => problems.push(`advertiser page error: ${e.message}`));
    await adv.goto(`${advertiserOrigin}/`);
    await adv.waitForFunction(() => document.querySelector('#h-ads')?.parentElement?.textContent?.includes('\u2713 announced'), null, { timeout: 5000 });
    const advHtml = await adv.evaluate(() => document.documentElement.outerHTML);
    assert.ok(!advHtml.includes(SECRET));
    assert.match(advHtml, /password=\[redacted\]/);
    assert.match(advHtml, /replica=2/);
    await adv.close();
    assert.deepEqual(problems, []);
  });

  test('keyboard: skip link first, details open with Enter, focus survives the live updates', async () => {
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => location.hash), '#h-listeners');
    let onSummary = false;
    for (let i = 0; i < 40 && !onSummary; i++) {
      await page.keyboard.press('Tab');
      onSummary = await page.evaluate(() => document.activeElement?.tagName === 'SUMMARY');
    }
    assert.ok(onSummary, 'a details summary is reachable with Tab');
    await page.keyboard.press('Enter');
    await page.evaluate(() => (window.focused = document.activeElement));
    const updated = () => page.evaluate(() => document.getElementById('live')?.textContent ?? '');
    const before = await updated();
    await page.waitForFunction((b) => document.getElementById('live')?.textContent !== b, before, { timeout: 3000 });
    const kept = await page.evaluate(() => {
      const f = window.focused;
      return f.isConnected && document.activeElement === f && f.parentElement.open === true;
    });
    assert.ok(kept, 'the same summary keeps the focus and its details stay open across updates');
  });

  test('360 px wide: no horizontal scrolling', async () => {
    await page.setViewportSize({ width: 360, height: 800 });
    const before = await page.evaluate(() => document.getElementById('live')?.textContent ?? '');
    await page.waitForFunction((b) => document.getElementById('live')?.textContent !== b, before, { timeout: 3000 });
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'fits 360 px');
    await page.evaluate(() => window.scrollTo(0, 0));
    const narrow = `${ARTIFACTS}status-page-360.png`;
    await page.screenshot({ path: narrow, fullPage: true });
    console.log(`# screenshot: ${narrow}`);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('kill -9 of a replica: the page shows it down, with the reason, within 3 s and without a reload', async () => {
    const t0 = Date.now();
    ambs[0]!.signal('SIGKILL');
    redis[0]!.kill('SIGKILL');
    await page.waitForFunction(() => [...document.querySelectorAll('li.ep')].some((li: any) => li.querySelector('strong')?.textContent === 'redis@replica-1' && li.textContent!.includes('\u2717 down')), null, { timeout: 10_000 });
    const ms = Date.now() - t0;
    const text = await endpointText(page, 'redis@replica-1');
    console.log(`# replica-1 shown down ${ms} ms after kill -9: ${text.slice(0, 160)}`);
    assert.ok(ms <= 3000, `shown down after ${ms} ms`);
    assert.match(text, /(health-check|host-probe|outlier|source-check): /, 'the reason beside the state');
    assert.match(text, /since \d\d:\d\d:\d\d/);
    assert.match(await endpointText(page, 'redis@replica-2'), /\u2713 up/);
    assert.equal(await page.evaluate(() => window.loadedOnce), true, 'no reload');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${ARTIFACTS}status-page-replica-down.png`, fullPage: true });
    console.log(`# screenshot: ${ARTIFACTS}status-page-replica-down.png`);
  });

  test('the page says when its ambassador stopped answering', async () => {
    const t0 = Date.now();
    connector.signal('SIGKILL');
    await page.waitForFunction(() => {
      const b = document.getElementById('banner');
      return !!b && !b.hidden && b.textContent!.includes('stopped answering');
    }, null, { timeout: 5000 });
    console.log(`# "stopped answering" shown ${Date.now() - t0} ms after kill -9 of the connector`);
    assert.match(await page.locator('#live').textContent() ?? '', /not answering/);
    assert.deepEqual(problems.filter((p) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(p)), []);
  });
});
