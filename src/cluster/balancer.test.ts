import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BALANCER_NAMES, createBalancer, isBalancerName } from './balancer.js';
import { Endpoint } from './endpoint.js';
import { seeded, spec } from '../testing/tcp-kit.js';

function eps(n: number, f: (i: number) => Partial<Parameters<typeof spec>[2]> = () => ({})): Endpoint[] {
  return Array.from({ length: n }, (_, i) => new Endpoint(spec(`e${i}`, 1000 + i, f(i))));
}

function counts(picks: (Endpoint | undefined)[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of picks) {
    const k = p?.id ?? 'none';
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

test('createBalancer: known names, default, clear error for unknown', () => {
  assert.deepEqual([...BALANCER_NAMES], ['round-robin', 'least-conn', 'random', 'srv']);
  for (const n of BALANCER_NAMES) assert.equal(createBalancer(n).name, n);
  assert.equal(createBalancer().name, 'round-robin');
  assert.throws(() => createBalancer('fastest'), /unknown balancer "fastest" \(expected one of: round-robin, least-conn, random, srv\)/);
  assert.ok(isBalancerName('srv'));
  assert.ok(!isBalancerName('nope'));
});

test('every balancer returns undefined on empty or fully excluded input', () => {
  const list = eps(2);
  for (const n of BALANCER_NAMES) {
    const b = createBalancer(n, { random: seeded(1) });
    assert.equal(b.pick([]), undefined);
    assert.equal(b.pick(list, new Set(list)), undefined);
  }
});

test('round-robin: exact rotation; a pick with exclusions (a retry) skips them without moving the rotation', () => {
  const list = eps(3);
  const b = createBalancer('round-robin');
  const seq = Array.from({ length: 9 }, () => b.pick(list)!.id);
  assert.deepEqual(seq, ['e0', 'e1', 'e2', 'e0', 'e1', 'e2', 'e0', 'e1', 'e2']);
  // Next is e0; a client's retry excluding it gets e1, and the next client still starts at e0.
  assert.equal(b.pick(list, new Set([list[0]!]))!.id, 'e1');
  assert.equal(b.pick(list)!.id, 'e0');
  assert.equal(b.pick(list)!.id, 'e1');
  assert.equal(b.pick(list)!.id, 'e2');
  // Exactly even over many picks.
  const c = counts(Array.from({ length: 300 }, () => b.pick(list)));
  assert.deepEqual([...c.values()], [100, 100, 100]);
});

test('round-robin: with one slow endpoint of two, each client raced away from it, new clients still alternate', () => {
  const [slow, good] = eps(2);
  const list = [slow!, good!];
  const b = createBalancer('round-robin');
  const first: string[] = [];
  for (let client = 0; client < 6; client++) {
    const ep = b.pick(list)!;
    first.push(ep.id);
    if (ep === slow) assert.equal(b.pick(list, new Set([slow!]))!.id, good!.id); // raced to the other
  }
  assert.deepEqual(first, ['e0', 'e1', 'e0', 'e1', 'e0', 'e1']);
});

test('round-robin: list shrinking between picks stays in range', () => {
  const list = eps(5);
  const b = createBalancer('round-robin');
  for (let i = 0; i < 4; i++) b.pick(list);
  assert.ok(b.pick(list.slice(0, 2)));
});

test('least-conn: picks the fewest active, rotates ties', () => {
  const list = eps(3);
  list[0]!.active = 5;
  list[1]!.active = 1;
  list[2]!.active = 3;
  const b = createBalancer('least-conn');
  assert.equal(b.pick(list)!.id, 'e1');
  assert.equal(b.pick(list, new Set([list[1]!]))!.id, 'e2');
  // Simulate connections being assigned: loads even out.
  for (const e of list) e.active = 0;
  for (let i = 0; i < 30; i++) b.pick(list)!.active++;
  assert.deepEqual(list.map((e) => e.active), [10, 10, 10]);
  // Ties with no assignment still rotate.
  for (const e of list) e.active = 0;
  const c = counts(Array.from({ length: 30 }, () => b.pick(list)));
  assert.deepEqual([...c.values()], [10, 10, 10]);
});

test('random: roughly uniform with a seeded source', () => {
  const list = eps(4);
  const b = createBalancer('random', { random: seeded(42) });
  const c = counts(Array.from({ length: 8000 }, () => b.pick(list)));
  assert.equal(c.size, 4);
  for (const v of c.values()) assert.ok(v > 1700 && v < 2300, `count ${v}`);
});

test('srv: only the lowest priority group with a candidate is used', () => {
  const list = eps(4, (i) => ({ priority: i < 2 ? 10 : 20, weight: 1 }));
  const b = createBalancer('srv', { random: seeded(3) });
  const c = counts(Array.from({ length: 1000 }, () => b.pick(list)));
  assert.deepEqual([...c.keys()].sort(), ['e0', 'e1']);
  // Both of priority 10 excluded (failed) -> falls to priority 20.
  const c2 = counts(Array.from({ length: 200 }, () => b.pick(list, new Set([list[0]!, list[1]!]))));
  assert.deepEqual([...c2.keys()].sort(), ['e2', 'e3']);
});

test('srv: weighted random within the group (RFC 2782)', () => {
  const list = eps(3, (i) => ({ priority: 0, weight: [10, 30, 60][i]! }));
  const b = createBalancer('srv', { random: seeded(12345) });
  const N = 20000;
  const c = counts(Array.from({ length: N }, () => b.pick(list)));
  const share = (id: string): number => (c.get(id) ?? 0) / N;
  assert.ok(Math.abs(share('e0') - 0.1) < 0.02, `e0 ${share('e0')}`);
  assert.ok(Math.abs(share('e1') - 0.3) < 0.02, `e1 ${share('e1')}`);
  assert.ok(Math.abs(share('e2') - 0.6) < 0.02, `e2 ${share('e2')}`);
});

test('srv: weight 0 only when every candidate of the group has weight 0', () => {
  const list = eps(3, (i) => ({ priority: 0, weight: i === 0 ? 0 : 5 }));
  const b = createBalancer('srv', { random: seeded(9) });
  const c = counts(Array.from({ length: 2000 }, () => b.pick(list)));
  assert.equal(c.get('e0'), undefined, 'weight 0 must not be picked while others have weight');
  // The weighted ones excluded: the weight-0 one is now the only candidate.
  assert.equal(b.pick(list, new Set([list[1]!, list[2]!]))!.id, 'e0');
  // All zero: uniform.
  const zeros = eps(2, () => ({ priority: 0, weight: 0 }));
  const cz = counts(Array.from({ length: 2000 }, () => b.pick(zeros)));
  for (const v of cz.values()) assert.ok(v > 850 && v < 1150, `count ${v}`);
  // Random source returning the extreme end stays in range.
  const edge = createBalancer('srv', { random: () => 0.9999999999999999 });
  assert.equal(edge.pick(list)!.id, 'e2');
  assert.equal(edge.pick(zeros)!.id, 'e1');
});
