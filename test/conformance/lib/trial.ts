// The shape of the conformance suite.
//
// A *scenario* is one rule of RFC 6762/6763 and one row of the scorecard: an id, the section, the
// rule in a sentence, and, once run, pass/fail with the value measured. A *trial* is one lab set
// up for one script (an ambassador started with some flags, a peer doing something to it, a
// capture of the wire) that measures one or more scenarios; several scenarios share a trial when
// the same run shows them (the start-up of an advertiser shows probing, announcing, cache-flush
// bits and IP TTLs), so the suite does not start thirty ambassadors to watch one start-up.
//
// A trial gets a fresh lab: host `dut` (the device under test, the real `ambassador` CLI), the
// scripted peer on the lab's gateway address, and a capture of the dut's link. It records one
// verdict per scenario it declares; a scenario it leaves unrecorded (the trial threw or timed out)
// is an error, which counts as a failure.
import type { Host, Lab, LabProcess } from '../../lib/netns.js';
import { startAmbassador } from '../../e2e/ambassador-kit.js';
import { startAvahiDut } from './avahi-dut.js';
import type { Capture } from './capture.js';
import type { Peer } from './peer.js';

export interface ScenarioSpec {
  /** Stable id, used by known-failures.json (kebab-case). */
  id: string;
  /** `6762 §8.1`, `6763 §12.1`; `…; issue 12` for a project target beyond the RFC's words. */
  rfc: string;
  /** The rule checked, one sentence, with the bound applied (as the scorecard shows it). */
  rule: string;
  /**
   * Set when the verdict rests on a timing bound that a loaded machine can push: the scorecard
   * says which tolerance was applied and why.
   */
  timing?: string;
}

export interface Verdict {
  pass: boolean;
  /** The measured value(s), short: `gaps 251, 250 ms`, `3 / 3 names`. */
  measured: string;
}

/**
 * What is measured: the ambassador (always, in CI), or — as a reference for the instrument
 * itself — avahi-daemon publishing the same services (CONFORMANCE_DUT=avahi).
 */
export type DutKind = 'ambassador' | 'avahi';

/** The running device under test. */
export interface Dut {
  signal(sig: NodeJS.Signals): void;
  /** Resolves when it has exited. */
  exited: Promise<unknown>;
  /** SIGTERM (goodbyes), then SIGKILL after a grace period. */
  stop(): Promise<void>;
}

export interface TrialContext {
  lab: Lab;
  /** The device under test's lab host (`dut`, address lab.host('dut').ip). */
  dut: Host;
  peer: Peer;
  /** Everything on the dut's link, from before the ambassador starts. */
  cap: Capture;
  dutKind: DutKind;
  /**
   * Starts `ambassador --log-format json --hostname dut --interface lab0 ARGS` on the dut (with
   * CONFORMANCE_DUT=avahi: avahi-daemon, host name dut, publishing the --advertise services).
   */
  ambassador(args: string[]): Promise<Dut>;
  /** TCP listeners on the dut (advertisements are health-gated: something must accept). */
  targets(ports: number[]): Promise<Targets>;
  /** Records the verdict of one of the trial's scenarios. */
  record(id: string, pass: boolean, measured: string): void;
}

export interface Trial {
  /** Short name, shown in logs and usable in CONFORMANCE_ONLY. */
  name: string;
  scenarios: ScenarioSpec[];
  /** Upper bound of the whole trial (setup included); then it is stopped and unrecorded rows error. */
  budgetMs: number;
  /** Why this trial cannot run here (a missing tool), or undefined. */
  requires?: () => string | undefined;
  /** Devices this trial can measure (default: the ambassador only; querier trials need its --connect). */
  duts?: DutKind[];
  /** Give the lab IPv6 (link-local addresses on every host). */
  ipv6?: boolean;
  run(ctx: TrialContext): Promise<void>;
}

/** TCP listeners in one process on a lab host; `close(port)` stops one (its advertisement withdraws). */
export class Targets {
  private constructor(private readonly proc: LabProcess) {}

  static async start(host: Host, ports: number[]): Promise<Targets> {
    // Health checks connect and reset at once: sockets ignore errors.
    const script = `
      const net = require('net'); const servers = new Map();
      for (const p of process.argv.slice(1).map(Number)) {
        const s = net.createServer((c) => { c.on('error', () => {}); c.end(); });
        s.listen(p, '0.0.0.0', () => { servers.set(p, s); if (servers.size === process.argv.length - 1) console.log('listening'); });
      }
      require('readline').createInterface({ input: process.stdin }).on('line', (l) => {
        const [cmd, port] = l.trim().split(' ');
        if (cmd === 'close' && servers.has(Number(port))) servers.get(Number(port)).close(() => console.log('closed ' + port));
      });`;
    const proc = host.spawn(process.execPath, ['-e', script, ...ports.map(String)], { stdin: 'pipe', name: `[${host.name}] targets` });
    await proc.waitForLine(/^listening$/, { timeoutMs: 10_000 });
    return new Targets(proc);
  }

  async close(port: number): Promise<void> {
    const since = this.proc.mark();
    this.proc.write(`close ${port}\n`);
    await this.proc.waitForLine(new RegExp(`^closed ${port}$`), { since, timeoutMs: 5000 });
  }
}

export function makeContext(lab: Lab, peer: Peer, cap: Capture, record: TrialContext['record'], dutKind: DutKind): TrialContext {
  const dut = lab.host('dut');
  return {
    lab, dut, peer, cap, record, dutKind,
    ambassador: async (args) => {
      if (dutKind === 'avahi') return startAvahiDut(dut, args);
      const amb = startAmbassador(dut, args);
      return {
        signal: (sig) => { amb.proc.kill(sig); },
        exited: amb.proc.exited,
        stop: async () => { await amb.stop(5000); },
      };
    },
    targets: (ports) => Targets.start(dut, ports),
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
