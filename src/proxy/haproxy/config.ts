import { isIPv6 } from 'node:net';
import { isLoopback } from '../../base/address.js';
import type { BalancerName } from '../../cluster/balancer.js';
import type { ListenerLimits } from '../limits.js';
import { type Slot, FREE_HOST, FREE_PORT } from './slots.js';

/** One --connect listener carried by HAProxy: a frontend and its backend. */
export interface HaproxyListenerSpec {
  /** Names of the frontend and the backend, see proxyNames(). */
  frontend: string;
  backend: string;
  bind: string;
  /** Further addresses, same port (`::1` beside `127.0.0.1`). */
  alsoBinds?: readonly string[];
  port: number;
  balance: BalancerName;
  limits: Readonly<ListenerLimits>;
  slots: readonly Slot[];
}

export interface HaproxyConfigSpec {
  /** The runtime API socket (in the ambassador's private directory). */
  adminSocket: string;
  connectTimeoutMs: number;
  /** Close a connection idle this long either way; 0 = never. */
  idleTimeoutMs: number;
  /** How long a client may wait for an endpoint with room (every one at max-per-endpoint). */
  queueTimeoutMs: number;
  /**
   * How long a client that finds no usable endpoint waits for one (--wait-for-endpoint), through
   * the Lua action of WAIT_LUA loaded from `luaFile`; 0 or no luaFile: it is closed at once.
   */
  noEndpointWaitMs: number;
  luaFile?: string;
  /** Endpoints tried per client (the first attempt and its retries, each on another endpoint). */
  connectAttempts: number;
  listeners: readonly HaproxyListenerSpec[];
}

/**
 * A client that finds no usable endpoint waits for one, as on the Node data plane: HAProxy has
 * no such wait of its own (with no server it closes the client at once), so this action sleeps
 * 10 ms at a time until the backend has a usable server or the wait is over. It runs only for
 * clients that find none (the rule's condition), so a normal connection pays one nbsrv().
 */
export const WAIT_LUA = `-- Written by mdns-ambassador (--data-plane haproxy): --wait-for-endpoint.
core.register_action("ambassador_wait_for_endpoint", { "tcp-req" }, function(txn, backend, ms)
  local left = tonumber(ms)
  while txn.f:nbsrv(backend) == 0 and left > 0 do
    core.msleep(10)
    left = left - 10
  end
end, 2)
`;

/** What HAProxy takes in its `timeout` lines for "never": its largest timer, about 24 days. */
const NEVER = '24d';
/** TCP keep-alive's idle time before the first probe, as the Node data plane's sockets (src/proxy/keepalive.ts). */
const KEEPALIVE_IDLE = '30s';

/**
 * Proxy names allow letters, digits, '-', '_', '.' and ':'. `fe_redis_127.0.0.1_6379` and
 * `be_…`: unique per listener (two --connect may serve one service), and different for the
 * frontend and the backend (the runtime API's `show stat NAME` takes the first proxy of a name).
 */
export function proxyNames(service: string, bind: string, port: number): { frontend: string; backend: string } {
  const base = `${service}_${bind}_${port}`.replace(/[^A-Za-z0-9_.:-]/g, '_');
  return { frontend: `fe_${base}`, backend: `be_${base}` };
}

function address(host: string, port: number): string {
  return isIPv6(host) ? `ipv6@${host}:${port}` : `${host}:${port}`;
}

function ms(n: number): string {
  return `${Math.max(1, Math.round(n))}ms`;
}

const BALANCE: Record<BalancerName, string> = {
  'round-robin': 'roundrobin',
  'least-conn': 'leastconn',
  // One draw: uniformly random (HAProxy's default of two draws picks the less loaded of two).
  random: 'random(1)',
  // RFC 2782: weighted random within a priority level; levels are the active and backup tiers.
  srv: 'random(1)',
};

/** The server lines of a backend: filled or retiring slots one by one, runs of free ones as a template. */
function serverLines(slots: readonly Slot[], maxconn: string): string[] {
  const out: string[] = [];
  let run: Slot[] = [];
  const flush = (): void => {
    if (run.length === 0) return;
    const first = Number(run[0]!.name.slice(1));
    const last = first + run.length - 1;
    const prefix = run[0]!.name[0];
    const backup = run[0]!.tier === 'backup' ? ' backup' : '';
    out.push(`  server-template ${prefix} ${first === last ? first : `${first}-${last}`} ${FREE_HOST}:${FREE_PORT} disabled${backup}${maxconn}`);
    run = [];
  };
  for (const s of slots) {
    const free = s.endpoint === undefined;
    const prev = run.at(-1);
    if (free && (!prev || (prev.tier === s.tier && Number(prev.name.slice(1)) + 1 === Number(s.name.slice(1))))) {
      run.push(s);
      continue;
    }
    flush();
    if (free) {
      run.push(s);
      continue;
    }
    // A draining slot starts with weight 0 (the configuration has no drain state): the runtime
    // API sets it right after the start.
    const weight = s.state === 'drain' ? 0 : s.weight;
    const disabled = s.state === 'maint' ? ' disabled' : '';
    out.push(`  server ${s.name} ${address(s.host, s.port)} weight ${weight}${disabled}${s.tier === 'backup' ? ' backup' : ''}${maxconn}`);
  }
  flush();
  return out;
}

/**
 * The slot as the rendered configuration leaves it in HAProxy (what the runtime API then
 * corrects): a draining slot starts ready with weight 0.
 */
export function renderedSlot(s: Slot): Slot {
  if (s.endpoint === undefined) return { ...s, host: FREE_HOST, port: FREE_PORT, weight: 1, state: 'maint' };
  return s.state === 'drain' ? { ...s, weight: 0, state: 'ready' } : { ...s };
}

/**
 * HAProxy's configuration for the listeners it carries. Written by the ambassador, never by
 * hand: every decision about endpoints is the ambassador's, so HAProxy runs no health check;
 * its slots' states are set over the runtime API.
 */
export function renderConfig(spec: HaproxyConfigSpec): string {
  const idle = spec.idleTimeoutMs > 0 ? ms(spec.idleTimeoutMs) : NEVER;
  const wait = spec.luaFile !== undefined && spec.noEndpointWaitMs > 0;
  // Each frontend accepts a little past its max-connections so that the one past the limit can
  // be refused at once (tcp-request connection reject) instead of waiting in the kernel's queue.
  const maxconn = spec.listeners.reduce((n, l) => n + frontendMaxconn(l.limits), 0) + 16;
  const lines = [
    '# Written by mdns-ambassador (--data-plane haproxy). The ambassador decides where bytes go:',
    '# discovery and health verdicts set the servers\' states over the runtime API.',
    'global',
    '  master-worker',
    `  stats socket ${spec.adminSocket} mode 600 level admin expose-fd listeners`,
    '  stats timeout 1m',
    `  maxconn ${maxconn}`,
    // A sidecar's share of the machine, as the bare HAProxy of bench/ is run.
    '  nbthread 1',
    ...(wait ? [`  lua-load ${spec.luaFile}`] : []),
    'defaults',
    '  mode tcp',
    `  timeout connect ${ms(spec.connectTimeoutMs)}`,
    `  timeout client ${idle}`,
    `  timeout server ${idle}`,
    `  timeout tunnel ${idle}`,
    `  timeout queue ${ms(spec.queueTimeoutMs)}`,
    // A connect that fails is retried before the client sees anything, each time on another endpoint.
    `  retries ${Math.max(0, spec.connectAttempts - 1)}`,
    '  option redispatch 1',
    // Keep-alive towards endpoints: they are across the network, where a host can vanish and a
    // NAT or firewall forgets idle flows. Two setsockopt() per connection, which HAProxy cannot
    // defer as the Node plane does (proxy/keepalive.ts); a bare HAProxy makes 19 syscalls per
    // connection, this one 21 (bench/conncost.mjs).
    '  option srvtcpka',
    `  srvtcpka-idle ${KEEPALIVE_IDLE}`,
  ];
  for (const l of spec.listeners) {
    const fin = Number.isFinite(l.limits.maxConnections) ? l.limits.maxConnections : undefined;
    // A per-endpoint limit that max-connections already covers never binds: no server maxconn,
    // no queue, no rule (each costs every connection a little: measured 0.6k instructions).
    const perEndpoint = l.limits.maxPerEndpoint < l.limits.maxConnections ? l.limits.maxPerEndpoint : undefined;
    lines.push(
      `frontend ${l.frontend}`,
      `  bind ${address(l.bind, l.port)}`,
      ...(l.alsoBinds ?? []).map((a) => `  bind ${address(a, l.port)}`),
      `  maxconn ${frontendMaxconn(l.limits)}`,
      // Towards clients only where they can be on another host: on loopback the kernel knows both
      // ends (two setsockopt() per connection saved for the default bind).
      ...([l.bind, ...(l.alsoBinds ?? [])].every(isLoopback) ? [] : ['  option clitcpka', `  clitcpka-idle ${KEEPALIVE_IDLE}`]),
      ...(fin !== undefined ? [`  tcp-request connection reject if { fe_conn gt ${fin} }`] : []),
      // Clients wait in the backend's queue only when every endpoint is at max-per-endpoint.
      ...(perEndpoint !== undefined && Number.isFinite(l.limits.maxPending)
        ? [`  tcp-request content reject if { queue(${l.backend}) ge ${l.limits.maxPending} }`] : []),
      // (A Lua action may only sleep while the inspection delay runs.)
      ...(wait ? [
        `  tcp-request inspect-delay ${ms(spec.noEndpointWaitMs + 1000)}`,
        `  tcp-request content lua.ambassador_wait_for_endpoint ${l.backend} ${Math.round(spec.noEndpointWaitMs)} if { nbsrv(${l.backend}) eq 0 }`,
      ] : []),
      `  default_backend ${l.backend}`,
      `backend ${l.backend}`,
      `  balance ${BALANCE[l.balance]}`,
      ...(l.balance === 'srv' ? ['  option allbackups'] : []),
      ...serverLines(l.slots, perEndpoint !== undefined ? ` maxconn ${perEndpoint}` : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}

function frontendMaxconn(limits: Readonly<ListenerLimits>): number {
  return Number.isFinite(limits.maxConnections) ? limits.maxConnections + 64 : 100_000;
}
