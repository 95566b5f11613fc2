/**
 * The whole analysis of one chaos run: what `tandem chaos` calls once the nemesis has stopped,
 * the cluster has healed and the final reads are in. Pure: the runner reads and writes files.
 */
import {
  type AvailabilityResult,
  checkAvailability,
  checkLeases,
  checkLostWrites,
  checkWatches,
  type LeaseObservation,
  type WatcherLog,
} from './checks.js';
import type { Operation, Value } from './history.js';
import { checkLinearizability, type LinearizabilityOptions } from './linearizability.js';
import type { ChaosChecks } from './report.js';

export interface AnalysisInput {
  readonly ops: readonly Operation[];
  /** Values read per key after quiescence (null = absent); enables the lost-write check. */
  readonly finalValues?: ReadonlyMap<string, Value>;
  readonly watchers?: readonly WatcherLog[];
  readonly leases?: readonly LeaseObservation[];
  readonly linearizability?: LinearizabilityOptions;
  readonly leaseToleranceMs?: number;
  /** The window over which availability is measured (default: the whole history). */
  readonly availabilityWindow?: { readonly fromMs?: number; readonly toMs?: number };
}

export function analyze(input: AnalysisInput): ChaosChecks & { availability: AvailabilityResult } {
  return {
    linearizability: checkLinearizability(input.ops, input.linearizability),
    ...(input.finalValues && { lostWrites: checkLostWrites(input.ops, input.finalValues) }),
    ...(input.watchers && { watches: checkWatches(input.ops, input.watchers) }),
    ...(input.leases && {
      leases: checkLeases(input.leases, { toleranceMs: input.leaseToleranceMs ?? 0 }),
    }),
    availability: checkAvailability(input.ops, input.availabilityWindow),
  };
}
