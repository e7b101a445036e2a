// Long connection churn through one connector (not in CI). Skips unless SOAK=1.
//   SOAK=1 SOAK_MINUTES=10 node scripts/test.mjs soak/connection-churn
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { AmbProc, collectGarbage, echoOnce, echoServer, freePort, GC_ON_SIGUSR2, metrics, sleep, waitFor } from '../robustness/kit.js';

const soak = process.env.SOAK === '1' ? false : 'soak run: set SOAK=1 (see test/soak/README.md)';
const MINUTES = Number(process.env.SOAK_MINUTES ?? 10);

test(`connection churn soak: ${MINUTES} min of short connections + 500 held`, { skip: soak, timeout: (MINUTES + 5) * 60_000 }, async () => {
  const echo = await echoServer();
  const [port, admin] = [await freePort(), await freePort()];
  const amb = new AmbProc(['--connect', `echo=${port}`, '--static', `echo=127.0.0.1:${echo.port}`, '--admin', String(admin), '--log-level', 'warn'], {}, GC_ON_SIGUSR2);
  const held: net.Socket[] = [];
  try {
    await waitFor(() => metrics(admin).then(() => true), { timeoutMs: 10_000, message: 'admin up' });
    await echoOnce(port);
    await collectGarbage(amb);
    const fds0 = amb.fds();
    const heap0 = (await metrics(admin)).nodejs_heap_size_used_bytes!;
    for (let i = 0; i < 500; i++) {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.on('error', () => {});
      await once(s, 'connect');
      held.push(s);
    }
    const end = Date.now() + MINUTES * 60_000;
    let ok = 0;
    let failed = 0;
    const worker = async () => {
      while (Date.now() < end) {
        try { await echoOnce(port, 'x\n', 5000); ok++; } catch { failed++; }
      }
    };
    let minute = 0;
    const report = setInterval(async () => {
      const m = await metrics(admin).catch(() => ({} as Record<string, number>));
      console.log(`# minute ${++minute}: ${ok} ok, ${failed} failed, fds ${amb.fds()}, rss ${Math.round(amb.rssKb() / 1024)} MB, heap ${Math.round((m.nodejs_heap_size_used_bytes ?? 0) / 1048576)} MB`);
    }, 60_000);
    await Promise.all(Array.from({ length: 20 }, worker));
    clearInterval(report);
    for (const s of held) s.destroy();
    await sleep(1000);
    await collectGarbage(amb);
    const fds1 = amb.fds();
    const heap1 = (await metrics(admin)).nodejs_heap_size_used_bytes!;
    console.log(`# soak churn: ${ok} ok, ${failed} failed; fds ${fds0} → ${fds1}; heap after GC ${Math.round(heap0 / 1048576)} → ${Math.round(heap1 / 1048576)} MB`);
    assert.equal(failed, 0);
    assert.ok(fds1 <= fds0 + 2);
    assert.ok(heap1 - heap0 < 20 * 1048576);
  } finally {
    for (const s of held) s.destroy();
    await amb.stop();
    await echo.close();
  }
});
