import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type EndpointFacts, type Slot, type SlotPlanInput, capacityOf, emptySlots, freeSlot, growSlots, haproxyWeights, planSlots, slotCommands,
} from './slots.js';

const ep = (key: string, port: number, more: Partial<EndpointFacts> = {}): EndpointFacts =>
  ({ key, host: '198.18.0.1', port, priority: 0, weight: 0, ...more });

function plan(input: Partial<SlotPlanInput> & { endpoints: EndpointFacts[] }) {
  return planSlots({ balance: 'round-robin', panic: false, slots: emptySlots({ active: 4, backup: 0 }), ...input });
}

const bound = (slots: Slot[]) => slots.filter((s) => s.endpoint !== undefined)
  .map((s) => `${s.name}:${s.endpoint}@${s.port}:${s.state}:${s.weight}${s.retiring ? ':retiring' : ''}`);

test('new endpoints fill the first free slots, ready, weight 1; nothing is missing', () => {
  const p = plan({ endpoints: [ep('a', 7001), ep('b', 7002)] });
  assert.deepEqual(bound(p.slots), ['s1:a@7001:ready:1', 's2:b@7002:ready:1']);
  assert.deepEqual(p.missing, { active: 0, backup: 0 });
  assert.equal(p.slots.length, 4);
});

test('an endpoint keeps its slot while its address stays: only state changes (no address command)', () => {
  const first = plan({ endpoints: [ep('a', 7001), ep('b', 7002)] });
  const second = plan({ slots: first.slots, endpoints: [ep('a', 7001, { down: 'host-probe' }), ep('b', 7002)] });
  assert.deepEqual(bound(second.slots), ['s1:a@7001:maint:1', 's2:b@7002:ready:1']);
  assert.deepEqual(slotCommands('be', first.slots[0]!, second.slots[0]!), ['set server be/s1 state maint']);
  assert.deepEqual(slotCommands('be', first.slots[1]!, second.slots[1]!), []);
});

test('goodbye and the advertiser\'s withdrawal drain (open connections stay); health evidence is maint', () => {
  const p = plan({ endpoints: [ep('a', 1, { down: 'goodbye' }), ep('b', 2, { down: 'source-check' }), ep('c', 3, { down: 'health-check' }), ep('d', 4, { down: 'outlier' })] });
  assert.deepEqual(bound(p.slots), ['s1:a@1:drain:1', 's2:b@2:drain:1', 's3:c@3:maint:1', 's4:d@4:maint:1']);
});

test('panic mode: endpoints down only on health evidence are made ready, a goodbye is not', () => {
  const endpoints = [ep('a', 1, { down: 'host-probe' }), ep('b', 2, { down: 'health-check' }), ep('c', 3, { down: 'goodbye' }), ep('d', 4, { down: 'outlier' })];
  const p = plan({ endpoints, panic: true });
  assert.deepEqual(bound(p.slots), ['s1:a@1:ready:1', 's2:b@2:ready:1', 's3:c@3:drain:1', 's4:d@4:ready:1']);
});

test('a removed endpoint\'s slot retires (maint, address kept) and is not reused until freed', () => {
  const first = plan({ endpoints: [ep('a', 7001), ep('b', 7002)] });
  const second = plan({ slots: first.slots, endpoints: [ep('b', 7002), ep('c', 7003)] });
  assert.deepEqual(bound(second.slots), ['s1:a@7001:maint:1:retiring', 's2:b@7002:ready:1', 's3:c@7003:ready:1']);
  assert.deepEqual(slotCommands('be', first.slots[0]!, second.slots[0]!), ['set server be/s1 state maint']);
  assert.deepEqual(slotCommands('be', first.slots[2]!, second.slots[2]!), ['set server be/s3 addr 198.18.0.1 port 7003', 'set server be/s3 state ready']);
  const freed = second.slots.map((s) => (s.retiring ? freeSlot(s) : s));
  const third = plan({ slots: freed, endpoints: [ep('b', 7002), ep('c', 7003), ep('d', 7004)] });
  assert.deepEqual(bound(third.slots), ['s1:d@7004:ready:1', 's2:b@7002:ready:1', 's3:c@7003:ready:1']);
  // maint → ready with a new address: address first, ready last
  assert.deepEqual(slotCommands('be', freed[0]!, third.slots[0]!), ['set server be/s1 addr 198.18.0.1 port 7004', 'set server be/s1 state ready']);
});

test('a moved endpoint takes a new slot; the old address retires for the connections still there', () => {
  const first = plan({ endpoints: [ep('a', 7001)] });
  const second = plan({ slots: first.slots, endpoints: [ep('a', 7101)] });
  assert.deepEqual(bound(second.slots), ['s1:a@7001:maint:1:retiring', 's2:a@7101:ready:1']);
});

test('more endpoints than slots: the rest is missing (the caller grows the table), existing ones untouched', () => {
  const p = plan({ slots: emptySlots({ active: 2, backup: 0 }), endpoints: [ep('a', 1), ep('b', 2), ep('c', 3), ep('d', 4)] });
  assert.deepEqual(bound(p.slots), ['s1:a@1:ready:1', 's2:b@2:ready:1']);
  assert.deepEqual(p.missing, { active: 2, backup: 0 });
  const grown = growSlots(p.slots, { active: 4, backup: 0 });
  assert.deepEqual(capacityOf(grown), { active: 4, backup: 0 });
  const again = planSlots({ balance: 'round-robin', panic: false, slots: grown, endpoints: [ep('a', 1), ep('b', 2), ep('c', 3), ep('d', 4)] });
  assert.deepEqual(bound(again.slots), ['s1:a@1:ready:1', 's2:b@2:ready:1', 's3:c@3:ready:1', 's4:d@4:ready:1']);
  assert.deepEqual(again.missing, { active: 0, backup: 0 });
});

test('the same input gives the same table (deterministic)', () => {
  const input = { endpoints: [ep('x', 1), ep('y', 2, { down: 'outlier' as const })] };
  assert.deepEqual(plan(input), plan(input));
});

test('srv: the best level with a usable endpoint is active, the next is backup; a third gets no slot', () => {
  const slots = emptySlots({ active: 2, backup: 2 });
  const endpoints = [ep('p0', 1, { priority: 0, weight: 10 }), ep('p10', 2, { priority: 10, weight: 0 }), ep('p20', 3, { priority: 20 })];
  const p = planSlots({ balance: 'srv', panic: false, slots, endpoints });
  assert.deepEqual(bound(p.slots), ['s1:p0@1:ready:256', 'b1:p10@2:ready:1']);
  assert.deepEqual(p.missing, { active: 0, backup: 0 });
  // the primary goes down: priority 10 becomes active (a new slot in that tier), 20 the backup
  const down = endpoints.map((e) => (e.key === 'p0' ? { ...e, down: 'host-probe' as const } : e));
  const q = planSlots({ balance: 'srv', panic: false, slots: p.slots, endpoints: down });
  assert.deepEqual(bound(q.slots), ['s1:p0@1:maint:1', 's2:p10@2:ready:1', 'b1:p10@2:maint:1:retiring', 'b2:p20@3:ready:1']);
  // the primary is back: everything returns; p10's active slot retires, it takes a backup one
  const freed = q.slots.map((s) => (s.retiring ? freeSlot(s) : s));
  const r = planSlots({ balance: 'srv', panic: false, slots: freed, endpoints });
  assert.deepEqual(bound(r.slots), ['s1:p0@1:ready:256', 's2:p10@2:maint:1:retiring', 'b1:p10@2:ready:1', 'b2:p20@3:maint:1']);
});

test('srv: weights within a level are proportional, weight 0 gets nothing while others have weight', () => {
  const slots = emptySlots({ active: 3, backup: 1 });
  const p = planSlots({ balance: 'srv', panic: false, slots, endpoints: [ep('a', 1, { weight: 60 }), ep('b', 2, { weight: 20 }), ep('c', 3, { weight: 0 })] });
  assert.deepEqual(bound(p.slots), ['s1:a@1:ready:256', 's2:b@2:ready:85', 's3:c@3:ready:0']);
  assert.deepEqual(haproxyWeights([0, 0]), [1, 1]);
  assert.deepEqual(haproxyWeights([65535, 1]), [256, 1]);
  assert.deepEqual(haproxyWeights([5]), [256]);
});

test('srv: an endpoint leaving (goodbye) keeps its slot, draining, when no tier wants it', () => {
  const slots = emptySlots({ active: 2, backup: 2 });
  const endpoints = [ep('p0', 1, { priority: 0 }), ep('p1', 2, { priority: 1 })];
  const p = planSlots({ balance: 'srv', panic: false, slots, endpoints });
  const q = planSlots({ balance: 'srv', panic: false, slots: p.slots, endpoints: [{ ...endpoints[0]!, down: 'goodbye' }, endpoints[1]!] });
  assert.deepEqual(bound(q.slots), ['s1:p0@1:drain:1', 's2:p1@2:ready:1', 'b1:p1@2:maint:1:retiring']);
});

test('slotCommands: weight before ready, maint before a new address, nothing when equal', () => {
  const a: Slot = { name: 's1', tier: 'active', host: '0.0.0.0', port: 1, weight: 1, state: 'maint' };
  assert.deepEqual(slotCommands('be', a, { ...a }), []);
  assert.deepEqual(slotCommands('be', a, { ...a, host: 'fd00::2', port: 9, weight: 7, state: 'ready' }),
    ['set server be/s1 addr fd00::2 port 9', 'set server be/s1 weight 7', 'set server be/s1 state ready']);
  const live: Slot = { ...a, host: '10.0.0.1', port: 5, state: 'ready' };
  assert.deepEqual(slotCommands('be', live, { ...live, host: '10.0.0.2', state: 'maint' }),
    ['set server be/s1 state maint', 'set server be/s1 addr 10.0.0.2 port 5']);
  assert.deepEqual(slotCommands('be', live, { ...live, state: 'drain' }), ['set server be/s1 state drain']);
});
