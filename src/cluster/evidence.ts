/**
 * How much silence is evidence of death on a path that also loses packets.
 *
 * A check or probe that goes unanswered is either a dead peer or an ordinary loss. On a clean
 * LAN two misses in a row are a death; on Wi-Fi losing 10 % each way, two in a row happen every
 * few seconds. So the number of misses needed before a verdict follows the loss rate seen on the
 * path while the peer was answering: few when nothing is lost (fast failover stays fast), more as
 * loss grows, enough that ordinary loss makes up such a streak only once in `1 / FALSE_ALARM`
 * streaks.
 */

/** Chance, per streak of misses starting, that loss alone would reach the verdict. */
export const FALSE_ALARM = 1e-4;

/**
 * Loss rate of a path, learned only from misses whose fate is known: when an answer arrives, the
 * misses since the previous answer were losses. Misses of a streak that ends in a down verdict
 * are never counted (they were a death, not loss), so a real outage does not raise the estimate
 * and slow down the next detection.
 */
export class LossEstimate {
  private r: number;

  /**
   * @param prior rate assumed before anything is known
   * @param weight weight of each new outcome (an exponentially weighted average over about
   *   2 / weight outcomes)
   */
  constructor(
    prior = 0.01,
    private readonly weight = 0.05,
  ) {
    this.r = clamp01(prior);
  }

  get rate(): number {
    return this.r;
  }

  /** An answer arrived after `lostBefore` misses in a row. */
  answered(lostBefore: number): void {
    const w = this.weight;
    // A miss moves the average towards 1, the answer towards 0. (Closed form of lostBefore steps.)
    if (lostBefore > 0) this.r = 1 - (1 - this.r) * (1 - w) ** Math.min(lostBefore, 1000);
    this.r *= 1 - w;
  }
}

/**
 * Misses in a row before a verdict of death: the smallest n with rate^n <= falseAlarm, within
 * [min, max].
 */
export function missesToConvict(rate: number, min: number, max: number, falseAlarm = FALSE_ALARM): number {
  const lo = Math.max(1, Math.floor(min));
  const hi = Math.max(lo, Math.floor(max));
  if (!(rate > 0)) return lo;
  if (rate >= 1) return hi;
  const n = Math.ceil(Math.log(falseAlarm) / Math.log(rate) - 1e-9);
  return Math.min(hi, Math.max(lo, n));
}

/**
 * Error codes that are proof, not loss: the peer's host answered that nobody listens, or the
 * network says it cannot be reached. One is enough for a verdict.
 */
export function isHardFailure(code: string | undefined): boolean {
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EHOSTDOWN';
}

function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}
