// Every trial of the conformance suite, in scorecard order (by RFC area).
import type { Trial } from '../lib/trial.js';
import { aggregation } from './aggregation.js';
import { additionals, replyTiming, unicastReplies } from './answers.js';
import { conflictA, conflictSrv, probeDenial, rateLimit, tiebreakLose, tiebreakWin } from './conflicts.js';
import { goodbyes } from './goodbyes.js';
import { liveNetwork } from './live-network.js';
import { cacheRefresh, duplicateQuestions, tcSend } from './querier.js';
import { startup } from './startup.js';
import { duplicateAnswers, knownAnswers } from './suppression.js';

export const TRIALS: Trial[] = [
  // probing, announcing (RFC 6762 §8, §10, §11)
  startup,
  // conflicts (§8.1, §8.2, §9)
  tiebreakWin,
  tiebreakLose,
  probeDenial,
  rateLimit,
  conflictSrv,
  conflictA,
  // answering (§5.4, §6, §6.1, §6.2, §6.7, §11; RFC 6763 §12)
  replyTiming,
  unicastReplies,
  additionals,
  // suppression (§7.1, §7.2, §7.4)
  knownAnswers,
  duplicateAnswers,
  // querying (§5.2, §7.2, §7.3)
  tcSend,
  duplicateQuestions,
  cacheRefresh,
  // goodbyes (§10.1)
  goodbyes,
  // scale: aggregation and the one-second rule against avahi-daemon (issue 12)
  aggregation,
  // live networks (issue 11): interface and address changes
  ...liveNetwork,
];
