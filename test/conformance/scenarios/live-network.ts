// Hook for the live-network scenarios (issue 11: interfaces and addresses that come and go while
// the ambassador runs). None yet: the engine's network monitor lands with issue 11, and its
// author adds the trials here, e.g.
//
//   export const liveNetwork: Trial[] = [{
//     name: 'address-change',
//     budgetMs: 30_000,
//     scenarios: [{ id: 'new-address-announced', rfc: '6762 §8.4', rule: 'a new address is announced with the cache-flush bit within 1 s' }],
//     async run({ dut, cap, ambassador, targets, record }) {
//       ...start an advertiser, then change the dut's link under it:
//       await dut.run('ip', ['addr', 'add', '198.18.x.9/24', 'dev', dut.ifname]);   // new address
//       await dut.linkDown('host'); await dut.linkUp('host');                     // cable pulled / back
//       ...and read the reaction off `cap` (kernel timestamps, records, flush bits), then record().
//     },
//   }];
//
// The capture listens on the dut's port of the lab bridge (switch namespace), not inside the dut;
// `dut.linkDown('switch')` cuts the cable at that very port, so the capture then sees what the
// rest of the segment sees: nothing. Check that tcpdump survives the change a trial makes
// (Capture.waitFor rejects with tcpdump's message if it exits).
import type { Trial } from '../lib/trial.js';

export const liveNetwork: Trial[] = [];
