// Connection load: 1 000 concurrent client connections through one connector, then a
// churn of short connections; no failed connection, no fd leak in the ambassador process, no
// memory growth once the load is over. The ambassador is the real CLI with a --static endpoint
// (an echo server in this process), so only loopback TCP is involved.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { AmbProc, collectGarbage, echoServer, freePort, GC_ON_SIGUSR2, metrics, sleep, waitFor } from './kit.js';

const CONCURRENT = Number(process.env.LOAD_CONCURRENT ?? 1000);
const CHURN = Number(process.env.LOAD_CHURN ?? 5000);

/** Opens a connection and does one round trip; resolves with the open socket. */
async function openAndEcho(port: number, tag: string): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1' });
  s.setNoDelay(true);
  await once(s, 'connect');
  await roundTrip(s, tag);
  return s;
}

function roundTrip(s: net.Socket, tag: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const msg = `${tag}\n`;
    let got = '';
    const t = setTimeout(() => done(new Error(`${tag}: no echo within ${timeoutMs} ms`)), timeoutMs);
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= msg.length) done(got === msg ? undefined : new Error(`${tag}: got ${JSON.stringify(got)}`));
    };
    const onClose = () => done(new Error(`${tag}: closed`));
    const done = (err?: Error) => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', onClose);
      if (err) reject(err); else resolve();
    };
    s.on('data', onData);
    s.once('close', onClose);
    s.write(msg);
  });
}

test(`connection load: ${CONCURRENT} concurrent + ${CHURN} short connections through one connector, no failure, no fd leak, no memory growth`, { timeout: 90_000 }, async () => {
  const echo = await echoServer();
  const [port, admin] = [await freePort(), await freePort()];
  const amb = new AmbProc(['--connect', `echo=${port}`, '--static', `echo=127.0.0.1:${echo.port}`, '--admin', String(admin), '--log-level', 'warn'], {}, GC_ON_SIGUSR2);
  const sockets: net.Socket[] = [];
  try {
    await waitFor(() => metrics(admin).then(() => true), { timeoutMs: 10_000, intervalMs: 50, message: 'admin up' });
    // Warm up (lazy module loading, first buffers), then the baseline.
    for (let i = 0; i < 50; i++) (await openAndEcho(port, `warm${i}`)).destroy();
    await collectGarbage(amb);
    const heapOf = async () => (await metrics(admin)).nodejs_heap_size_used_bytes ?? NaN;
    const fds0 = amb.fds();
    const rss0 = amb.rssKb();
    const heap0 = await heapOf();

    // 1. CONCURRENT connections, opened 100 at a time, all held open.
    const t0 = Date.now();
    const failures: string[] = [];
    for (let i = 0; i < CONCURRENT; i += 100) {
      const batch = await Promise.allSettled(Array.from({ length: Math.min(100, CONCURRENT - i) }, (_, j) => openAndEcho(port, `c${i + j}`)));
      for (const r of batch) {
        if (r.status === 'fulfilled') sockets.push(r.value);
        else failures.push(String(r.reason));
      }
    }
    const openMs = Date.now() - t0;
    await waitFor(() => echo.sockets.size >= sockets.length, { timeoutMs: 5000, message: 'every connection reached the upstream' });
    const m = await metrics(admin);
    const fdsPeak = amb.fds();
    const rssPeak = amb.rssKb();
    // All of them talk at once.
    const t1 = Date.now();
    const again = await Promise.allSettled(sockets.map((s, i) => roundTrip(s, `again${i}`)));
    for (const r of again) if (r.status === 'rejected') failures.push(String(r.reason));
    const allAtOnceMs = Date.now() - t1;
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    await waitFor(() => echo.sockets.size === 0, { timeoutMs: 10_000, message: 'upstream connections closed' });

    // 2. Churn: CHURN short connections, 50 in parallel.
    const t2 = Date.now();
    let next = 0;
    let churnOk = 0;
    const worker = async () => {
      while (next < CHURN && Date.now() - t2 < 60_000) {
        const i = next++;
        try {
          const s = await openAndEcho(port, `s${i}`);
          s.end();
          await once(s, 'close');
          churnOk++;
        } catch (e) {
          failures.push(`churn ${i}: ${(e as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 50 }, worker));
    const churnMs = Date.now() - t2;

    // 3. After the load: connections gone, fds back, memory settled.
    await waitFor(() => echo.sockets.size === 0, { timeoutMs: 10_000, message: 'churn connections closed' });
    let fds1 = amb.fds();
    for (let i = 0; i < 50 && fds1 > fds0; i++) { await sleep(100); fds1 = amb.fds(); }
    await sleep(1000);
    await collectGarbage(amb);
    const rss1 = amb.rssKb();
    const heap1 = await heapOf();
    const active = (await metrics(admin)).ambassador_connections_active ?? 0;
    const MB = (kb: number) => (kb / 1024).toFixed(1);
    console.log(`# connection load: ${CONCURRENT} concurrent opened in ${openMs} ms (active per /metrics: ${m.ambassador_connections_active}), one round trip on all at once in ${allAtOnceMs} ms; ` +
      `${churnOk}/${CHURN} short connections in ${churnMs} ms (${Math.round((churnOk * 1000) / churnMs)}/s); failures ${failures.length}`);
    console.log(`# ambassador fds: ${fds0} before → ${fdsPeak} at ${CONCURRENT} open → ${fds1} after; RSS ${MB(rss0)} → ${MB(rssPeak)} → ${MB(rss1)} MB; ` +
      `heap used after GC ${MB(heap0 / 1024)} → ${MB(heap1 / 1024)} MB; active after: ${active}`);

    assert.deepEqual(failures.slice(0, 5), [], 'no failed connection');
    assert.equal(churnOk, CHURN);
    assert.ok(fdsPeak >= fds0 + 2 * CONCURRENT, `the ambassador held both sides of ${CONCURRENT} connections (${fdsPeak} fds)`);
    assert.ok(fds1 <= fds0 + 2, `no fd leak (${fds0} → ${fds1})`);
    assert.equal(active, 0, 'no connection left active');
    assert.ok(heap1 - heap0 < 20 * 1048576, `heap back near the baseline (+${MB((heap1 - heap0) / 1024)} MB)`);
    assert.ok(rss1 - rss0 < 150 * 1024, `RSS growth bounded (+${MB(rss1 - rss0)} MB)`);
  } finally {
    for (const s of sockets) s.destroy();
    await amb.stop();
    await echo.close();
  }
});
