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

/**
 * Chance, per streak of misses starting, that loss alone would reach the verdict. At 30 % loss
 * each way a streak starts about once a second: one false verdict in ~1 day.
 */
export const FALSE_ALARM = 1e-5;

/**
 * Loss rate of a path, learned only from misses whose fate is known: when an answer arrives, the
 * misses since the previous answer were losses. Misses of a streak that ends in a down verdict
 * are never counted (they were a death, not loss), so a real outage does not raise the estimate
 * and slow down the next detection.
 *
 * Two exponentially weighted averages, a slow one (steady loss, bursts smoothed out) and a fast
 * one (loss that just got worse, say a microwave oven next to the access point); the estimate is
 * the larger: evidence must outlast the worse of the two.
 */
export class LossEstimate {
  private slow: number;
  private fast: number;

  /**
   * @param prior rate assumed before anything is known
   * @param slowWeight weight of each outcome in the slow average (memory of about 2 / weight outcomes)
   * @param fastWeight the same for the fast one
   */
  constructor(
    prior = 0.003,
    private readonly slowWeight = 0.03,
    private readonly fastWeight = 0.2,
  ) {
    this.slow = this.fast = clamp01(prior);
  }

  get rate(): number {
    return Math.max(this.slow, this.fast);
  }

  /** An answer arrived after `lostBefore` misses in a row. */
  answered(lostBefore: number): void {
    this.slow = update(this.slow, this.slowWeight, lostBefore);
    this.fast = update(this.fast, this.fastWeight, lostBefore);
  }
}

/** `lostBefore` steps towards 1, then one towards 0 (closed form). */
function update(r: number, w: number, lostBefore: number): number {
  if (lostBefore > 0) r = 1 - (1 - r) * (1 - w) ** Math.min(lostBefore, 1000);
  return r * (1 - w);
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
