import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { FakeClock } from '../base/clock.js';
import { decodeLiveness, encodeLiveness, REPLY, REQUEST } from './liveness-wire.js';
import { LivenessAnswerer } from './liveness-answerer.js';

const nonce = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');

test('answers a request with the status of each port, never longer than the request', () => {
  const r = new LivenessAnswerer({ serving: (p) => p === 6379, clock: new FakeClock() });
  const req = encodeLiveness(REQUEST, nonce, [{ port: 6379 }, { port: 7000 }]);
  const rep = r.answer(req, '198.18.1.3')!;
  assert.equal(rep.length, req.length, 'no amplification');
  const d = decodeLiveness(rep)!;
  assert.equal(d.type, REPLY);
  assert.ok(d.nonce.equals(nonce));
  assert.deepEqual(d.entries, [{ port: 6379, status: 1 }, { port: 7000, status: 0 }]);
  assert.equal(r.answer(encodeLiveness(REQUEST, nonce, []), '198.18.1.3')!.length, 16, 'a bare liveness probe');
});

test('drops and counts what is not a request: garbage, replies, a generic echo of our own reply', () => {
  const r = new LivenessAnswerer({ serving: () => true, clock: new FakeClock() });
  assert.equal(r.answer(Buffer.from('GET / HTTP/1.0\r\n\r\n'), '198.18.1.3'), undefined);
  const reply = encodeLiveness(REPLY, nonce, [{ port: 1, status: 1 }]);
  assert.equal(r.answer(reply, '198.18.1.3'), undefined, 'replies are never answered (no ping-pong between answerers)');
  assert.deepEqual({ malformed: r.stats.malformed, requests: r.stats.requests, replies: r.stats.replies }, { malformed: 2, requests: 0, replies: 0 });
});

test('rate limits per source and in all, refilling with time', () => {
  const clock = new FakeClock();
  const r = new LivenessAnswerer({ serving: () => true, clock, maxRepliesPerSourcePerSecond: 10, maxRepliesPerSecond: 1000 });
  const req = encodeLiveness(REQUEST, nonce, [{ port: 1 }]);
  let answered = 0;
  for (let i = 0; i < 100; i++) if (r.answer(req, '198.18.1.66')) answered++;
  assert.equal(answered, 20, 'a burst of two seconds worth from one source');
  assert.ok(r.answer(req, '198.18.1.67'), 'another source is not starved');
  clock.advance(1000);
  answered = 0;
  for (let i = 0; i < 100; i++) if (r.answer(req, '198.18.1.66')) answered++;
  assert.equal(answered, 10);
  assert.equal(r.stats.rateLimited, 80 + 90);

  const g = new LivenessAnswerer({ serving: () => true, clock, maxRepliesPerSourcePerSecond: 1000, maxRepliesPerSecond: 50 });
  let all = 0;
  for (let i = 0; i < 200; i++) if (g.answer(req, `198.18.2.${i}`)) all++;
  assert.equal(all, 10, 'global burst: a fifth of a second');
});

test('answers over UDP on its port, to the sender', async (t) => {
  const r = new LivenessAnswerer({ serving: () => true });
  const port = await r.start();
  t.after(() => r.stop());
  assert.ok(port > 0);
  const c = dgram.createSocket('udp4');
  t.after(() => c.close());
  await new Promise<void>((res) => c.connect(port, '127.0.0.1', res));
  c.send(encodeLiveness(REQUEST, nonce, [{ port: 80 }]));
  const [msg] = (await once(c, 'message')) as [Buffer];
  assert.deepEqual(decodeLiveness(msg)!.entries, [{ port: 80, status: 1 }]);
});
