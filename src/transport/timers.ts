/**
 * Time as the transport needs it: the member's `Clock` (src/io/clock.ts). The transport keeps a
 * handful of timers per peer (retry, probe, dial, snapshot stall), never one per message.
 */
import { type Clock, REAL_CLOCK, type TimerHandle } from '../io/clock.js';

export type { TimerHandle };
export type TransportTimers = Clock;
export const REAL_TIMERS: TransportTimers = REAL_CLOCK;
