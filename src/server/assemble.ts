/**
 * One place that builds a whole member: the loop (`Member`), the parts around it — role truth,
 * self-publication, lease duties, ack=all, the redundancy driver — and the etcd façade, wired
 * through one event fan-out and one tick schedule (events.ts).
 *
 *            MemberIo (clock, network, persistence, recovered log, state machine)
 *                                        │
 *   Member ──hooks──► MemberEvents ──► RoleTruth, SelfPublication, LeaseDuties, AckAll,
 *     │ tick            │ tick           RedundancyDriver, EtcdFacade, observers (metrics, sim)
 *     └─────────────► TickSchedule ──► role checks, probes, publication, lease duties,
 *                                      watch hub, policy rounds
 *
 * `tandem start` (src/cli/node.ts), the simulator's member mode (src/sim/member-host.ts) and the
 * server tests all assemble members here, so the simulator runs the member whole, façade
 * included. Only the io bundle differs: real files, sockets and time, or virtual ones.
 */
import type { StandbyMode } from '../cluster/commands.js';
import type { RedundancyPolicy } from '../cluster/policy.js';
import type { Clock } from '../io/clock.js';
import type { Network } from '../io/network.js';
import type { RaftPersistence } from '../io/persistence.js';
import type { StoreBugName } from '../kv/mvcc/store.js';
import type { MemoryStorage } from '../raft/storage.js';
import type { BugName, NodeId, RaftLogger } from '../raft/types.js';
import type { Random } from '../util/prng.js';
import { AckAll, type AckAllBugName } from './ack-all.js';
import type { LeaderForwarder } from './contract.js';
import { MemberEvents, TickSchedule } from './events.js';
import { EtcdFacade, leaderClientUrls } from './facade.js';
import { type LeaseBugName, LeaseDuties } from './leases.js';
import { type ApplyTimer, type LoopBugName, Member, type MemberTiming } from './member.js';
import { type PublicationBugName, SelfPublication } from './publication.js';
import { POLICY_INTERVAL_MS, type PolicyEvent, RedundancyDriver } from './redundancy.js';
import { type RoleBugName, RoleTruth } from './role.js';
import type { CommandResult, TandemStateMachine } from './tandem-state-machine.js';

/** How often the watch hub catches slow watchers up (etcd: 100 ms). */
export const WATCH_TICK_INTERVAL_MS = 100;

/** Bugs of the parts around the loop, for the simulator to catch (never in production). */
export type MemberBugName =
  | RoleBugName
  | AckAllBugName
  | LeaseBugName
  | PublicationBugName
  | LoopBugName
  | StoreBugName;
export const MEMBER_BUG_NAMES: readonly MemberBugName[] = [
  'serve-unconfirmed',
  'role-checked-on-arrival',
  'ack-all-early',
  'lease-expire-early',
  'publish-no-retry',
  'lease-by-ticks',
  'compaction-forgets-pending',
];

/** What a member is: its identity, its published facts, its timing and its policies. */
export interface MemberSpec {
  readonly id: NodeId;
  readonly clusterId: bigint;
  /** Name and client URLs, published through the log (etcd's publish). */
  readonly name: string;
  readonly clientUrls: readonly string[];
  /** Zone and standby settings, published as registry commands. */
  readonly zone?: string;
  readonly standby: { readonly mode: StandbyMode; readonly snapshotEveryMs: number };
  readonly timing: MemberTiming;
  /** Take a snapshot (and compact the log) every this many applied entries. */
  readonly snapshotEveryEntries: number;
  /** Member.snapshotEveryEntriesMax: unset, a snapshot every snapshotEveryEntries. */
  readonly snapshotEveryEntriesMax?: number;
  readonly compactionKeepEntries: number;
  readonly fastFailover?: boolean;
  /** `replication.preferLeaderZone`: leadership moves to a healthy voter of this zone. */
  readonly preferLeaderZone?: string | null;
  /** The redundancy policy the leader runs; null: no automatic redundancy. */
  readonly policy: RedundancyPolicy | null;
  /** An ack=all write fails with WRITE_ACK_TIMEOUT after this long (it is committed). */
  readonly ackAllTimeoutMs?: number;
  /** etcd's --quota-backend-bytes (default 2 GiB): see EtcdFacade's checkQuota. */
  readonly quotaBackendBytes?: number;
  /** limits.leasesMax: a LeaseGrant past it is refused at apply (tandem-state-machine.ts). */
  readonly leasesMax?: number;
  /** Known bugs switched on (the simulator's `--bug`): raft's and the parts'. */
  readonly bugs?: ReadonlySet<BugName | MemberBugName>;
}

/** The world as the member sees it: real or simulated. */
export interface MemberIo {
  readonly clock: Clock;
  readonly network: Network;
  readonly persistence: RaftPersistence;
  /** The durable log as recovered (snapshot, entries, hard state). */
  readonly storage: MemoryStorage;
  /** The replicated state over its backend, recovered to its applied index. */
  readonly state: TandemStateMachine;
  readonly random: Random;
  /** Lease calls and ack=all checks a follower sends to the leader; none: refused there. */
  readonly forwarder?: LeaderForwarder;
  readonly logger?: RaftLogger;
  /** Bytes of the backend on disk, for Status and the quota. */
  readonly dbSizeBytes?: () => number;
  /** Bytes of the backend's pages holding data (Status's dbSizeInUse); default: dbSizeBytes. */
  readonly dbSizeInUseBytes?: () => number;
  /** Times each applied command (metrics). */
  readonly applyTimer?: ApplyTimer;
  /** Gives the backend's free space back (etcd's Defragment), run while apply is paused. */
  readonly defragment?: () => Promise<void>;
  readonly onPolicyEvent?: (event: PolicyEvent) => void;
  /** Sees an exception a periodic duty threw (`policy`, `role-check`, ...) before it propagates. */
  readonly onDutyError?: (duty: string, error: unknown) => void;
}

export interface AssembledMember {
  readonly member: Member<CommandResult>;
  readonly state: TandemStateMachine;
  readonly facade: EtcdFacade;
  readonly role: RoleTruth;
  readonly redundancy: RedundancyDriver | null;
  /** Subscribe observers here before `start` (metrics, logs, the simulator's checks). */
  readonly events: MemberEvents;
  readonly schedule: TickSchedule;
  start(): void;
  /** Stops the duties and the loop (after its write in flight); `done` once stopped. */
  stop(done: () => void): void;
}

export function assembleMember(spec: MemberSpec, io: MemberIo): AssembledMember {
  const { clock, state } = io;
  const bugs = spec.bugs;
  const events = new MemberEvents();
  const schedule = new TickSchedule(spec.timing.tickMs, io.onDutyError);
  schedule.attach(events);
  const member = new Member<CommandResult>({
    id: spec.id,
    clock,
    network: io.network,
    persistence: io.persistence,
    storage: io.storage,
    stateMachine: state,
    random: io.random,
    timing: spec.timing,
    snapshotEveryEntries: spec.snapshotEveryEntries,
    ...(spec.snapshotEveryEntriesMax === undefined
      ? {}
      : { snapshotEveryEntriesMax: spec.snapshotEveryEntriesMax }),
    compactionKeepEntries: spec.compactionKeepEntries,
    hooks: events,
    ...(io.applyTimer === undefined ? {} : { applyTimer: io.applyTimer }),
    ...(spec.fastFailover === undefined ? {} : { fastFailover: spec.fastFailover }),
    ...(io.logger === undefined ? {} : { logger: io.logger }),
    ...(bugs === undefined ? {} : { bugs }),
  });
  const electionTimeoutMs = spec.timing.tickMs * spec.timing.electionTicks;
  const role = new RoleTruth({
    member,
    state,
    clock,
    events,
    schedule,
    name: spec.name,
    configuredStandbyMode: spec.standby.mode,
    probeIntervalMs: spec.timing.tickMs * spec.timing.heartbeatTicks,
    ...(bugs === undefined ? {} : { bugs }),
  });
  new SelfPublication({
    member,
    state,
    role,
    schedule,
    name: spec.name,
    clientUrls: spec.clientUrls,
    standby: spec.standby,
    ...(spec.zone === undefined ? {} : { zone: spec.zone }),
    ...(bugs === undefined ? {} : { bugs }),
  });
  new LeaseDuties({
    member,
    state,
    clock,
    events,
    schedule,
    electionTimeoutMs,
    ...(bugs === undefined ? {} : { bugs }),
  });
  schedule.every('watch', WATCH_TICK_INTERVAL_MS, () => {
    role.syncWatchRefusal();
    state.watchHub.tick(clock.now());
  });
  const redundancy =
    spec.policy === null
      ? null
      : new RedundancyDriver({
          member,
          state,
          clock,
          policy: spec.policy,
          electionTimeoutMs,
          preferLeaderZone: spec.preferLeaderZone ?? null,
          // Refresh records are read by other processes: wall clock, not the monotonic one.
          wallClockMs: () => clock.wallNow(),
          ...(io.onPolicyEvent === undefined ? {} : { onEvent: io.onPolicyEvent }),
        });
  if (redundancy !== null) schedule.every('policy', POLICY_INTERVAL_MS, () => redundancy.tick());
  const ackAll = new AckAll({
    member,
    state,
    clock,
    events,
    leaderClientUrls: () => leaderClientUrls(member, state),
    ...(io.forwarder === undefined ? {} : { forwarder: io.forwarder }),
    ...(spec.ackAllTimeoutMs === undefined ? {} : { timeoutMs: spec.ackAllTimeoutMs }),
    ...(bugs === undefined ? {} : { bugs }),
  });
  const facade = new EtcdFacade({
    member,
    state,
    clock,
    events,
    role,
    ackAll,
    redundancy,
    clusterId: spec.clusterId,
    electionTimeoutMs,
    ...(io.forwarder === undefined ? {} : { forwarder: io.forwarder }),
    ...(io.dbSizeBytes === undefined ? {} : { dbSizeBytes: io.dbSizeBytes }),
    ...(io.dbSizeInUseBytes === undefined ? {} : { dbSizeInUseBytes: io.dbSizeInUseBytes }),
    ...(io.defragment === undefined ? {} : { defragment: io.defragment }),
    ...(spec.quotaBackendBytes === undefined ? {} : { quotaBackendBytes: spec.quotaBackendBytes }),
    ...(spec.leasesMax === undefined ? {} : { leasesMax: spec.leasesMax }),
    ...(bugs === undefined ? {} : { bugs }),
  });
  return {
    member,
    state,
    facade,
    role,
    redundancy,
    events,
    schedule,
    start(): void {
      member.start();
      role.start();
    },
    stop(done: () => void): void {
      facade.close();
      member.stop(done);
    },
  };
}
