import type { EndpointHistory, HistorySubject } from './endpoint-history.js';
import { packageVersion } from './package-version.js';
import { peersSnapshot, type PeersSubject } from './peers.js';

/** Health as /healthz reports it. */
export interface HealthReport {
  ok: boolean;
  status: string;
  listeners: number;
  refusing: string[];
}

export interface StatusSources {
  readonly subject: PeersSubject;
  readonly history: EndpointHistory;
  health(): HealthReport;
  /** Epoch ms when the ambassador started. */
  readonly startedAt: number;
}

/** Key of a listener in the rate history and the page: its configured address. */
export function listenerKey(c: PeersSubject['connectors'][number]): string {
  return `${c.spec.bind}:${c.spec.port}`;
}

/** Key of an endpoint in the rate history and the page: its listener's, and its key in the cluster. */
function endpointHistoryKey(c: PeersSubject['connectors'][number], epKey: string): string {
  return `${listenerKey(c)} ${epKey}`;
}

/**
 * The status page's model: what /peers shows (built by the same code, TXT redaction included),
 * plus who this ambassador is, its health, and the rate history with the endpoints that left.
 * `rates: true` carries every kept sample (the first message of a stream, GET /status); without,
 * the page extends its copy from the samples of sampleEvent().
 */
export function statusModel(src: StatusSources, opts: { rates: boolean }) {
  const { subject, history } = src;
  const snapshot = peersSnapshot(subject, {
    endpoint: (c, ep) => ({
      historyKey: endpointHistoryKey(c, ep.key),
      ...(opts.rates ? { rates: history.rates(ep) } : {}),
    }),
    cluster: (c) => ({
      historyKey: listenerKey(c),
      ...(opts.rates ? { acceptedRates: history.accepted(c) } : {}),
      /** Endpoints that left within the last minutes, and why (newest last). */
      departed: history.departures(c).map((d) => ({
        label: d.label, source: d.source, address: d.address, reason: d.reason,
        since: new Date(d.since).toISOString(), goneAt: new Date(d.goneAt).toISOString(),
      })),
    }),
  });
  return {
    /** The ambassador's clock (epoch ms) when this was built: the page measures its offset. */
    now: Date.now(),
    ambassador: {
      version: packageVersion(),
      node: process.version,
      pid: process.pid,
      startedAt: new Date(src.startedAt).toISOString(),
      health: src.health(),
    },
    /** The rate series: one sample a second, `seq` the last one taken. */
    history: { seq: history.seq, intervalMs: 1000, samples: history.samples, withRates: opts.rates },
    ...snapshot,
  };
}

export type StatusModel = ReturnType<typeof statusModel>;

/**
 * The newest sample of every series that is not zero (an idle mesh sends almost nothing):
 * accepted clients per listener, [connections, failures] per endpoint.
 */
export function sampleEvent(subjects: readonly (PeersSubject['connectors'][number] & HistorySubject)[], history: EndpointHistory) {
  const listeners: Record<string, number> = {};
  const endpoints: Record<string, [number, number]> = {};
  for (const c of subjects) {
    const accepted = history.latestAccepted(c);
    if (accepted) listeners[listenerKey(c)] = accepted;
    for (const ep of c.cluster.endpoints()) {
      const [conn, fail] = history.latest(ep);
      if (conn || fail) endpoints[endpointHistoryKey(c, ep.key)] = [conn, fail];
    }
  }
  return { seq: history.seq, listeners, endpoints };
}
