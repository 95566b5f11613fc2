/**
 * Member mode: the simulator runs the PRODUCTION member loop (`Member`, src/server/member.ts)
 * over the simulated I/O of member-io.ts, with the real KV state machine (`TandemStateMachine`
 * over an in-memory backend), and checks what clients see (kv-checker.ts) besides the Raft
 * invariants that apply (checker.ts: election safety, log matching, committed-stable, leader
 * completeness on election, applied entries are the committed ones).
 *
 *   MemberHost        one node: durable Raft state (a MemoryStorage written only by completed
 *                     disk writes) and, while up, a Member, its state machine and its I/O
 *   MemberSimulation  the cluster, the KV clients, the nemesis and the liveness phase
 *
 * A crash kills the incarnation (clock, network handlers, disk writes in flight, the KV backend:
 * it is in memory). A restart rebuilds the state machine from the durable snapshot (`restore`)
 * and the Member replays the committed log after it, as a real member restarting on a lost
 * backend does.
 */

import { SNAPSHOT_EVERY_MS_DEFAULT } from '../cluster/commands.js';
import { votersAfter } from '../cluster/policy.js';
import { encodeAttributes, type Founder, foundingConfig } from '../cluster/registry.js';
import type { PeerReport } from '../io/network.js';
import {
  CompareResult,
  CompareTarget,
  compactionRequest,
  compare,
  op,
  putRequest,
  type RangeRequest,
  rangeRequest,
  type TxnRequest,
  txnRequest,
} from '../kv/api-types.js';
import { RawNode } from '../raft/rawnode.js';
import type { MemoryStorage } from '../raft/storage.js';
import { MemoryStorage as Storage } from '../raft/storage.js';
import {
  type BugName,
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  MESSAGE_TYPE_NAMES,
  type Message,
  MessageType,
  type NodeId,
  StateType,
} from '../raft/types.js';
import { type AssembledMember, assembleMember, type MemberBugName } from '../server/assemble.js';
import type { WriteAck } from '../server/contract.js';
import { MEMBER_RAFT } from '../server/member.js';
import type { PolicyEvent } from '../server/redundancy.js';
import { type TandemMember, TandemStateMachine } from '../server/tandem-state-machine.js';
import { AssertionError, assert } from '../util/assert.js';
import { Prng } from '../util/prng.js';
import { Checker, failureOf, InvariantViolation, type RunFailure } from './checker.js';
import { SimDisk } from './disk.js';
import { KvChecker } from './kv-checker.js';
import { type DurableLog, MemberChecker, type ServedBy } from './member-checker.js';
import {
  DigestBackend,
  type ForwardWorld,
  SimClock,
  type SimFault,
  SimForwarder,
  SimPeerNetwork,
  SimPersistence,
} from './member-io.js';
import { type DropReason, SimNetwork } from './network.js';
import { deriveParams, formatParams, MAX_STEPS_DEFAULT, type SimParams } from './params.js';
import { EventQueue } from './queue.js';
import {
  deriveRedundancyParams,
  describe,
  formatRedundancyParams,
  type LateVoter,
  type NemesisWorld,
  type PolicyBugName,
  RedundancyChecker,
  RedundancyNemesis,
  type RedundancyParams,
  redundancyNetwork,
  restoreBoundWithLateVoters,
} from './redundancy.js';
import { formatConf, membersOf, type Phase, type RunOptions, type RunResult } from './run.js';
import { Trace } from './trace.js';
import { throughTheWire } from './wire.js';

/** Trace kinds (numbers mixed into the trace hash). */
const TRACE_APPLY = 40;
const TRACE_ROLE = 41;
const TRACE_CRASH = 42;
const TRACE_RESTART = 43;
const TRACE_DELIVER = 44;
const TRACE_DROP = 45;
const TRACE_CLIENT = 46;
const TRACE_FAULT = 47;
const TRACE_CONF_PROPOSED = 48;
const TRACE_CONF_APPLIED = 49;
const TRACE_POLICY = 50;
const TRACE_PAUSE = 51;
const DROP_REASON_CODE: Readonly<Record<DropReason, number>> = { lost: 1, partitioned: 2, down: 3 };
const READ_KIND_CODE: Readonly<Record<ReadKind, number>> = {
  linearizable: 0,
  lease: 1,
  serializable: 2,
  txn: 3,
};

/**
 * After a put fails or its member dies, its key waits this long before the next put: longer
 * than any message (a forwarded proposal) can stay in flight, so puts of one key commit in the
 * order they were issued and values increase per key in commit order.
 */
const PUT_RETRY_COOLDOWN_MS = 500;
const ROLE_NAMES = ['follower', 'candidate', 'leader', 'pre-candidate'];
/**
 * The façade answers through promises, whose continuations run only when the JavaScript stack
 * unwinds: while clients wait, the run yields to them whenever this much virtual time has
 * passed. Deterministic: the same events run between the same yields.
 */
const CONTINUATIONS_EVERY_MS = 1;
/** Leases the workload keeps alive at once, at most. */
const WORKLOAD_LEASES_MAX = 8;

/** Lets every pending promise continuation run (they all run before a setImmediate callback). */
function continuations(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Member mode's parameters beyond SimParams (drawn from a stream of their own). */
export interface MemberModeParams {
  readonly keys: number;
  readonly requestTimeoutMs: number;
  /** Share of linearizable reads served through `leaseReadBarrier`. */
  readonly leaseReadShare: number;
  readonly fault: SimFault | null;
  /** Redundancy mode: standbys and the production RedundancyDriver on every member. */
  readonly redundancy: RedundancyParams | null;
  /** A bug of the parts around the member loop (src/server/assemble.ts), or none. */
  readonly memberBug: MemberBugName | null;
  /** Share of puts acknowledged only once every voter has them (ack=all). */
  readonly ackAllShare: number;
  /** Share of reads served from local state (serializable). */
  readonly serializableShare: number;
  /** Share of linearizable reads sent as a read-only txn (a compare and a range). */
  readonly readTxnShare: number;
  /** Share of nemesis rounds that pause a member (SIGSTOP, SIGCONT), the leader most often. */
  readonly pauseRate: number;
  /** Mean ms between lease grants (0: no leases in this seed). */
  readonly leaseEveryMs: number;
  /** Mean ms between compactions near the newest revision seen (0: none in this seed). */
  readonly compactEveryMs: number;
  /**
   * Records a compaction deletes per backend transaction: small, so that most compactions leave
   * deletes to run in batches between applies (and across snapshots and restarts).
   */
  readonly compactBatchRecords: number;
  /** Redundancy mode: share of client requests sent to any up member, standbys included. */
  readonly anyMemberShare: number;
}

export type ClientOutcome = 'ok' | 'failed' | 'lost';

// ---------------------------------------------------------------------------------------------
// One node

/**
 * A client's read: through ReadIndex, the leader's lease, or local state (serializable); or a
 * read-only txn (a compare and a range, linearizable: a read, never a log entry).
 */
export type ReadKind = 'linearizable' | 'lease' | 'serializable' | 'txn';

/** The client URL member `id` publishes (the forwarder finds a leader by it). */
export function simClientUrl(id: NodeId): string {
  return `http://n${id}:2379`;
}

export class MemberHost {
  state: 'up' | 'down' = 'down';
  /** The whole member (loop, façade, role truth, driver) of the current incarnation. */
  assembled: AssembledMember | null = null;
  private clock: SimClock | null = null;
  net: SimPeerNetwork | null = null;
  private persistence: SimPersistence | null = null;
  readonly disk: SimDisk;
  /** Client operations waiting on the current incarnation: told 'lost' when it dies. */
  private readonly waiting = new Set<() => void>();
  restarts = 0;
  /** When this incarnation became leader (of its current term); null while not leading. */
  leaderSinceMs: number | null = null;
  /** Membership changes this incarnation handed to Raft, unresolved: their incoming voters. */
  readonly changesInFlight = new Map<number, readonly NodeId[]>();
  /** What the cluster had committed when this incarnation started (served-from-the-past). */
  committedAtStart = 0;

  constructor(
    readonly id: NodeId,
    private readonly sim: MemberSimulation,
    private readonly rng: Prng,
    /** Durable Raft state: changed only by completed disk writes. */
    readonly durable: MemoryStorage,
  ) {
    this.disk = new SimDisk(sim.queue, rng.fork(), sim.params.disk);
  }

  get up(): boolean {
    return this.state === 'up';
  }

  get member(): TandemMember | null {
    return this.assembled?.member ?? null;
  }

  get sm(): TandemStateMachine | null {
    return this.assembled?.state ?? null;
  }

  get appliedIndex(): number {
    return this.sm?.appliedIndex() ?? 0;
  }

  start(): void {
    assert(this.state === 'down', `node ${this.id} starts while up`);
    const sim = this.sim;
    const p = sim.params;
    const clock = new SimClock(sim.queue, this.rng.fork());
    const backend = new DigestBackend();
    const electionMs = p.electionTicks * p.tickMs;
    const sm = new TandemStateMachine({
      backend,
      nowMs: () => clock.now(),
      // As src/cli/node.ts: a lease outlives the election a leader crash may cause.
      lessor: { minTtlSeconds: Math.ceil((1.5 * electionMs) / 1000) },
      compactBatchRecords: sim.mode.compactBatchRecords,
      ...(sim.mode.memberBug === 'compaction-forgets-pending'
        ? { storeBugs: new Set(['compaction-forgets-pending'] as const) }
        : {}),
    });
    // The KV backend is in memory: every start rebuilds it from the durable snapshot.
    const snap = this.durable.snapshot();
    sm.restore(snap);
    sim.kv.onApplied(
      this.id,
      snap.metadata.index,
      backend.digestExcluding(sm.compactionPendingRecords()),
      'restoring a snapshot at',
    );
    const net = new SimPeerNetwork(this.id, sim.network, clock);
    const persistence = new SimPersistence(
      this.id,
      this.durable,
      this.disk,
      clock,
      sim.checker,
      sim.mode.fault,
    );
    const founder = sim.founder(this.id);
    const r = sim.mode.redundancy;
    const assembled = assembleMember(
      {
        id: this.id,
        clusterId: 1n,
        name: founder.name,
        clientUrls: [simClientUrl(this.id)],
        ...(founder.zone === undefined ? {} : { zone: founder.zone }),
        standby: {
          mode: founder.standbyMode ?? 'hot',
          snapshotEveryMs: SNAPSHOT_EVERY_MS_DEFAULT,
        },
        timing: {
          tickMs: p.tickMs,
          electionTicks: p.electionTicks,
          heartbeatTicks: p.heartbeatTicks,
          requestTimeoutMs: sim.mode.requestTimeoutMs,
        },
        snapshotEveryEntries: p.snapshotEveryEntries === 0 ? 1e9 : p.snapshotEveryEntries,
        // The log-bytes rule on, as in production (Member.snapshotEveryEntriesMax); the
        // simulator's images are below SNAPSHOT_DEFER_IMAGE_BYTES_MIN, so it defers none.
        snapshotEveryEntriesMax: p.snapshotEveryEntries === 0 ? 1e9 : 2 * p.snapshotEveryEntries,
        compactionKeepEntries: p.compactKeepEntries,
        policy: r?.policy ?? null,
        ackAllTimeoutMs: sim.mode.requestTimeoutMs,
        bugs: new Set<BugName | MemberBugName>([
          ...(p.bugs as ReadonlySet<BugName>),
          ...(sim.mode.memberBug === null ? [] : [sim.mode.memberBug]),
        ]),
      },
      {
        clock,
        network: net,
        persistence,
        storage: this.durable.clone(),
        state: sm,
        random: this.rng.fork(),
        forwarder: new SimForwarder(this.id, sim.forwardWorld),
        onPolicyEvent: (e) => sim.onPolicyEvent(this.id, e),
        onDutyError: (duty, error) => {
          // The driver asserts its own rules before it proposes: when one fires while (by the
          // simulator's own account) a change is in flight, it caught a second change.
          if (duty === 'policy' && error instanceof AssertionError) {
            sim.onDriverAssertion(this, error);
          }
        },
      },
    );
    this.observe(assembled, backend);
    this.leaderSinceMs = null;
    this.changesInFlight.clear();
    this.clock = clock;
    this.net = net;
    this.persistence = persistence;
    this.assembled = assembled;
    this.state = 'up';
    this.restarts++;
    this.committedAtStart = sim.members.committedFloor(0);
    sim.redundancy?.outages.markUp(this.id, sim.queue.nowMs);
    sim.trace.mix(TRACE_RESTART, this.id, snap.metadata.index);
    sim.traceLine(`n${this.id} start from snapshot ${snap.metadata.index}`);
    assembled.start();
  }

  private observe(assembled: AssembledMember, backend: DigestBackend): void {
    const sim = this.sim;
    const { events } = assembled;
    events.softState.push((soft, term) => {
      sim.trace.mix(TRACE_ROLE, this.id, soft.raftState, term);
      const leads = soft.raftState === StateType.Leader;
      if (leads && this.leaderSinceMs === null) this.leaderSinceMs = sim.queue.nowMs;
      if (!leads) this.leaderSinceMs = null;
      sim.traceLine(`n${this.id} ${ROLE_NAMES[soft.raftState]} term=${term}`);
      if (leads) {
        sim.checker.observeLeader(this.id, term);
        sim.checker.checkLeaderLog(this.id, term, this.durable, []);
      }
    });
    events.applied.push((entry, result) => this.onApplied(entry, result, backend));
    events.confChange.push((change, confState, index) =>
      sim.onConfApplied(this.id, change, confState, index),
    );
    events.fatal.push((error) => {
      throw new Error(`member ${this.id} stopped: ${error.message}`);
    });
    if (sim.mode.redundancy === null) return;
    // The changes the member hands to Raft: checked now, followed until they resolve.
    events.confChangeProposed.push((change, seq) => {
      sim.onChangeProposed(this, change);
      this.changesInFlight.set(seq, votersAfter(this.member!.configuration.voters, change.changes));
    });
    events.confChangeSettled.push((seq) => this.changesInFlight.delete(seq));
  }

  /** A conf change entry in the durable log above the applied index (in flight), or null. */
  unappliedConfIndex(): number | null {
    const lo = Math.max(this.appliedIndex + 1, this.durable.firstIndex());
    const hi = this.durable.lastIndex();
    if (lo > hi) return null;
    for (const e of this.durable.entries(lo, hi + 1, Number.POSITIVE_INFINITY)) {
      if (e.type === EntryType.ConfChange) return e.index;
    }
    return null;
  }

  private onApplied(entry: Entry, result: unknown, backend: DigestBackend): void {
    const digest = backend.digestExcluding(this.sm!.compactionPendingRecords());
    this.sim.kv.onApplied(this.id, entry.index, digest);
    this.sim.checker.onApply(this.id, entry, digest);
    this.sim.members.onApplied(entry, result, this.sim.queue.nowMs);
    this.sim.trace.mix(TRACE_APPLY, this.id, entry.index, entry.term, digest % 0x100000000);
  }

  /** The process dies: everything volatile is gone, disk writes in flight are lost. */
  crash(): void {
    if (this.state !== 'up') return;
    this.disk.crash();
    this.persistence!.crash();
    this.persistence = null;
    this.clock!.kill();
    this.sim.redundancy?.outages.markDown(this.id, this.sim.queue.nowMs);
    this.leaderSinceMs = null;
    this.changesInFlight.clear();
    this.net!.kill();
    this.assembled = null;
    this.clock = null;
    this.net = null;
    this.state = 'down';
    this.sim.trace.mix(TRACE_CRASH, this.id);
    this.sim.processGone(this.id);
    this.sim.traceLine(`n${this.id} crash`);
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const lost of waiting) lost();
  }

  /** The role as the member reports it (null when down). */
  role(): { leader: boolean; term: number } | null {
    const m = this.member;
    return m === null ? null : { leader: m.isLeader, term: m.term };
  }

  // -------------------------------------------------------------------------------------------
  // Clients: through the member's etcd façade, as the gRPC API calls it.

  /** What the member-level checks need of this member now (it answered a client). */
  private servedBy(): ServedBy {
    return {
      id: this.id,
      appliedIndex: this.appliedIndex,
      committedAtStart: this.committedAtStart,
      registryRole: this.sm?.member(this.id)?.role,
    };
  }

  /** A put; `done(outcome, revision)`. False when the node is down. */
  put(
    key: string,
    value: number,
    ack: WriteAck,
    done: (outcome: ClientOutcome, revision?: number) => void,
  ): boolean {
    const facade = this.assembled?.facade;
    if (facade === undefined) return false;
    const finish = this.track(done);
    const request = putRequest({ key: encode(key), value: encode(String(value)) });
    this.settle(
      () => facade.put(request, { consistency: LINEARIZABLE, ack }),
      (r) => {
        this.sim.members.checkServed(`a put of ${key}`, this.servedBy(), false);
        finish('ok', r.header.revision);
      },
      () => finish('failed'),
    );
    // INJECTED FAULT: acknowledged once the member took it, before it is committed or applied.
    if (this.sim.mode.fault === 'ack-before-apply') finish('ok');
    return true;
  }

  /**
   * A compaction at `revision`; `done(ok)`. Refusals (COMPACTED, FUTURE_REV) are expected: the
   * workload picks revisions near what it saw. False when the node is down.
   */
  compact(revision: number, done: (ok: boolean) => void): boolean {
    const facade = this.assembled?.facade;
    if (facade === undefined) return false;
    const finish = this.track((outcome: ClientOutcome) => done(outcome === 'ok'));
    this.settle(
      () =>
        facade.compact(compactionRequest(revision), { consistency: LINEARIZABLE, ack: 'quorum' }),
      () => finish('ok'),
      () => finish('failed'),
    );
    return true;
  }

  /** A read of `key`; `done(value)`, null on failure. False when the node is down. */
  read(key: string, kind: ReadKind, done: (value: number | null) => void): boolean {
    const facade = this.assembled?.facade;
    if (facade === undefined) return false;
    const finish = this.track((outcome: ClientOutcome, value?: number) =>
      done(outcome === 'ok' ? value! : null),
    );
    const request = rangeRequest({ key: encode(key), serializable: kind === 'serializable' });
    const consistency = kind === 'lease' ? LEASE : LINEARIZABLE;
    const read = () =>
      kind === 'txn'
        ? facade.txn(readOnlyTxn(request), { consistency, ack: 'quorum' }).then((r) => {
            const first = r.response.responses[0];
            assert(first?.response === 'responseRange', 'the read-only txn answered its range');
            return first.responseRange;
          })
        : facade.range(request, { consistency, ack: 'quorum' }).then((r) => r.response);
    this.settle(
      read,
      (response) => {
        this.sim.members.checkServed(`a ${kind} read of ${key}`, this.servedBy(), true);
        finish('ok', writtenValue(response.kvs[0]?.value));
      },
      () => finish('failed'),
    );
    return true;
  }

  /** A lease grant; `done(id, ttlSeconds)` or `done(null)`. False when the node is down. */
  leaseGrant(
    ttlSeconds: number,
    done: (lease: { id: bigint; ttlSeconds: number } | null) => void,
  ): boolean {
    const facade = this.assembled?.facade;
    if (facade === undefined) return false;
    const finish = this.track(
      (outcome: ClientOutcome, lease?: { id: bigint; ttlSeconds: number }) =>
        done(outcome === 'ok' ? lease! : null),
    );
    this.settle(
      () => facade.leaseGrant(0n, ttlSeconds, QUORUM_WRITE),
      (grant) => {
        this.sim.members.checkServed('a lease grant', this.servedBy(), false);
        finish('ok', { id: grant.id, ttlSeconds: grant.ttlSeconds });
      },
      () => finish('failed'),
    );
    return true;
  }

  /** A keep-alive (forwarded to the leader by a follower); `done(ok)`. False when down. */
  leaseKeepAlive(id: bigint, done: (ok: boolean) => void): boolean {
    const facade = this.assembled?.facade;
    if (facade === undefined) return false;
    const finish = this.track((outcome: ClientOutcome) => done(outcome === 'ok'));
    this.settle(
      () => facade.leaseKeepAlive(id, QUORUM_WRITE),
      () => finish('ok'),
      () => finish('failed'),
    );
    return true;
  }

  /**
   * Calls the member (once the process runs: a paused one reads its requests on resuming), then
   * runs `ok` or `failed` when the answer settles, unless this incarnation died meanwhile (the
   * client was told 'lost' then); an invariant violation stops the run.
   */
  private settle<T>(call: () => Promise<T>, ok: (value: T) => void, failed: () => void): void {
    const incarnation = this.assembled;
    const current = (): boolean => this.assembled === incarnation && incarnation !== null;
    this.clock!.run(
      () =>
        call().then(
          (value) => this.sim.guard(() => current() && ok(value)),
          () => this.sim.guard(() => current() && failed()),
        ),
      'clients',
    );
  }

  /** SIGSTOP for `ms`, then SIGCONT: the process runs nothing meanwhile; the world goes on. */
  pause(ms: number): void {
    if (this.clock === null) return;
    this.clock.pause(this.sim.queue.nowMs + ms);
    this.sim.trace.mix(TRACE_PAUSE, this.id, Math.round(ms));
    this.sim.traceLine(`n${this.id} paused for ${ms.toFixed(0)}ms`);
  }

  /** Runs `fn` in this process (now, or when a pause ends); false when the process is down. */
  runInProcess(fn: () => void, channel: string): boolean {
    if (this.clock === null) return false;
    this.clock.run(fn, channel);
    return true;
  }

  /** The value this (up) member holds for `key`, 0 for none. */
  valueOf(key: string): number {
    return readValue(this.sm!, key);
  }

  hash(): string {
    const h = this.sm!.hash();
    return `${h.hash.toString(16)}@${h.revision}/${h.compactRevision}`;
  }

  /** This member's durable log, as the ack=all check reads it. */
  durableLog(): DurableLog {
    const d = this.durable;
    const first = d.firstIndex();
    const last = d.lastIndex();
    return {
      firstIndex: first,
      lastIndex: last,
      termAt: (index) => (index < first || index > last ? null : d.term(index)),
    };
  }

  private track<V>(
    done: (outcome: ClientOutcome, value?: V) => void,
  ): (outcome: ClientOutcome, value?: V) => void {
    let finished = false;
    this.sim.clientOpsInFlight++;
    const finish = (outcome: ClientOutcome, value?: V): void => {
      if (finished) return;
      finished = true;
      this.sim.clientOpsInFlight--;
      this.waiting.delete(lost);
      done(outcome, value);
    };
    const lost = (): void => finish('lost');
    this.waiting.add(lost);
    return finish;
  }

  deliver(msg: Message): boolean {
    return this.net?.deliver(msg) ?? false;
  }

  report(report: PeerReport): void {
    this.net?.report(report);
  }
}

const LINEARIZABLE = { kind: 'linearizable' } as const;

/** A read-only txn as lock and Kubernetes clients send: a compare that always holds, a range. */
function readOnlyTxn(range: RangeRequest): TxnRequest {
  return txnRequest({
    compare: [
      compare({
        key: range.key,
        target: CompareTarget.Version,
        result: CompareResult.Greater,
        version: -1,
      }),
    ],
    success: [op.range(range)],
    failure: [],
  });
}
const LEASE = { kind: 'lease' } as const;
const QUORUM_WRITE = { consistency: LINEARIZABLE, ack: 'quorum' } as const;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

function encode(text: string): Uint8Array {
  return textEncoder.encode(text);
}

function readValue(sm: TandemStateMachine, key: string): number {
  return writtenValue(sm.range(rangeRequest({ key: encode(key) })).kvs[0]?.value);
}

/** A value the workload wrote (a positive integer), 0 for none. */
function writtenValue(bytes: Uint8Array | undefined): number {
  if (bytes === undefined) return 0;
  const value = Number(textDecoder.decode(bytes));
  assert(Number.isSafeInteger(value) && value > 0, 'a key holds a foreign value');
  return value;
}

// ---------------------------------------------------------------------------------------------
// The cluster

/** Redundancy mode's switches (RunOptions.redundancy, policyBug, voters). */
export interface RedundancyOptions {
  readonly voters?: number;
  readonly bug: PolicyBugName | null;
}

export function deriveMemberMode(
  seed: number,
  fault: SimFault | null,
  params: SimParams,
  redundancy: RedundancyOptions | null = null,
  memberBug: MemberBugName | null = null,
): MemberModeParams {
  const rng = new Prng(seed ^ 0x6d656d62);
  const keys = rng.range(2, 8);
  const requestTimeoutMs = rng.range(500, 2000);
  // Drawn from a stream of their own, so the parameters above stay what they were.
  const facade = new Prng(seed ^ 0x66616361);
  const compaction = new Prng(seed ^ 0x636f6d70);
  return {
    compactEveryMs: compaction.chance(0.6) ? compaction.range(100, 800) : 0,
    compactBatchRecords: compaction.range(1, 4),
    keys,
    requestTimeoutMs,
    leaseReadShare: rng.chance(0.5) ? rng.float() * 0.5 : 0,
    fault,
    memberBug,
    ackAllShare: facade.chance(0.5) ? facade.float() * 0.5 : 0,
    serializableShare: facade.chance(0.6) ? 0.1 + facade.float() * 0.4 : 0,
    leaseEveryMs: facade.chance(0.6) ? facade.range(100, 600) : 0,
    anyMemberShare: redundancy === null ? 0 : facade.float() * 0.3,
    readTxnShare: facade.chance(0.5) ? facade.float() * 0.5 : 0,
    pauseRate: facade.chance(0.5) ? 0.1 + facade.float() * 0.2 : 0,
    redundancy:
      redundancy === null
        ? null
        : deriveRedundancyParams(seed, {
            ...(redundancy.voters === undefined ? {} : { voters: redundancy.voters }),
            electionMs: params.electionTicks * params.tickMs,
            tickMs: params.tickMs,
            requestTimeoutMs,
            network: params.network,
            bug: redundancy.bug,
          }),
  };
}

/** The Raft options Member fixes, so that the printed parameters say what runs. */
function memberParams(p: SimParams, seed: number, redundancy: boolean): SimParams {
  const rng = new Prng(seed ^ 0x73616665);
  const safetyMs = rng.range(2_000, 6_000);
  return {
    ...p,
    // Redundancy mode: silence must mean something (bounded latency tails, little loss), and
    // the safety phase must outlast a few replaceAfter periods.
    ...(redundancy
      ? { network: redundancyNetwork(p.network), safetyMs: safetyMs + rng.range(3_000, 6_000) }
      : { safetyMs }),
    learnersInitial: 0,
    preVote: MEMBER_RAFT.preVote,
    checkQuorum: MEMBER_RAFT.checkQuorum,
    maxMsgBytes: MEMBER_RAFT.maxMsgBytes,
    maxInflightMsgs: MEMBER_RAFT.maxInflightMsgs,
    maxUncommittedBytes: MEMBER_RAFT.maxUncommittedBytes,
    applyMode: 'replay',
    loseUnsyncedWrites: false,
    leaseReads: false,
    stepsDuringReady: true,
    crashAfterVoteRate: 0,
    leaderFaultRate: 0,
  };
}

export function formatMemberParams(p: SimParams, m: MemberModeParams): string {
  const line =
    `${formatParams(p)} mode=member keys=${m.keys} request-timeout=${m.requestTimeoutMs}ms ` +
    `lease-read-share=${m.leaseReadShare.toFixed(3)} fault=${m.fault ?? 'none'} ` +
    `ack-all-share=${m.ackAllShare.toFixed(3)} serializable-share=${m.serializableShare.toFixed(3)} ` +
    `lease-every=${m.leaseEveryMs}ms any-member-share=${m.anyMemberShare.toFixed(3)} ` +
    `read-txn-share=${m.readTxnShare.toFixed(3)} pause-rate=${m.pauseRate.toFixed(3)} ` +
    `compact-every=${m.compactEveryMs}ms compact-batch=${m.compactBatchRecords}` +
    `${m.memberBug === null ? '' : ` bug=${m.memberBug}`}`;
  return m.redundancy === null ? line : `${line} ${formatRedundancyParams(m.redundancy)}`;
}

const MEMBER_FAULTS = [
  'crash',
  'flash-crash',
  'restart',
  'isolate',
  'split',
  'asymmetric',
  'heal',
  'transfer',
] as const;
type MemberFaultKind = (typeof MEMBER_FAULTS)[number];

export class MemberSimulation {
  readonly params: SimParams;
  readonly mode: MemberModeParams;
  readonly queue = new EventQueue();
  readonly rng: Prng;
  readonly network: SimNetwork<Message>;
  readonly checker = new Checker();
  readonly kv = new KvChecker();
  readonly trace: Trace;
  readonly hosts = new Map<NodeId, MemberHost>();
  phase: Phase = 'safety';
  steps = 0;
  livenessDoneMs = -1;
  crashes = 0;
  private readonly wl: Prng;
  /** Pause faults draw from a stream of their own (the others stay as they were per seed). */
  private readonly pauses: Prng;
  private readonly keys: string[] = [];
  /** Per key: free for a put from this virtual time on (Infinity while one is in flight). */
  private readonly keyFreeAtMs = new Map<string, number>();
  private valueNext = 1;
  /** The newest revision an acknowledged put returned (compactions aim near it). */
  private newestRevisionSeen = 0;
  private readNext = 1;
  private markerIndex = 0;
  private markerInFlight = false;
  /** The façade-level checks: role truth, ack=all, lease expiry, publication. */
  readonly members: MemberChecker;
  /** Client operations started and not yet settled (their continuations still to run). */
  clientOpsInFlight = 0;
  /** An invariant violated inside a promise continuation: thrown by the run loop. */
  private pendingFailure: unknown = null;
  private readonly founders = new Map<NodeId, Founder>();
  /** How forwarded calls travel (SimForwarder). */
  readonly forwardWorld: ForwardWorld;
  /** Leases the workload keeps alive, by id. */
  private readonly leasesLive = new Map<bigint, number>();
  /** Redundancy mode: its checks, its nemesis, the voter killed for good in the liveness phase. */
  readonly redundancy: RedundancyChecker | null;
  private readonly redundancyNemesis: RedundancyNemesis | null = null;
  private deadId: NodeId | null = null;
  /** Redundancy mode: the operator's late voters, by id (hosts not started with the others). */
  private readonly lateVoters = new Map<NodeId, LateVoter>();
  /** The operator (not the policy) is proposing: its change skips the policy's checks. */
  private operatorProposing = false;
  /** The newest configuration any member applied, and its index. */
  private newestConf: { index: number; state: ConfState };
  confChangesApplied = 0;

  constructor(options: RunOptions) {
    const redundancy: RedundancyOptions | null =
      options.redundancy === true
        ? {
            ...(options.voters === undefined ? {} : { voters: options.voters }),
            bug: options.policyBug ?? null,
          }
        : null;
    const base = deriveParams(options.seed, {
      ...(options.voters === undefined || redundancy !== null ? {} : { voters: options.voters }),
      ...(options.bug === undefined ? {} : { bugs: [options.bug] }),
    });
    const params = memberParams(base, options.seed, redundancy !== null);
    this.mode = deriveMemberMode(
      options.seed,
      options.fault ?? null,
      params,
      redundancy,
      options.memberBug ?? null,
    );
    const r = this.mode.redundancy;
    this.params = r === null ? params : { ...params, voters: r.voters };
    this.redundancy = r === null ? null : new RedundancyChecker(r);
    this.rng = new Prng(options.seed ^ 0x5eed5eed);
    this.wl = this.rng.fork();
    this.pauses = new Prng(options.seed ^ 0x70617573);
    this.trace = Trace.fromOption(options.trace);
    this.network = new SimNetwork<Message>(this.queue, this.rng.fork(), this.params.network, {
      deliver: (from, to, msg) => this.deliver(from, to, msg),
      dropped: (from, to, msg, reason) => this.dropped(from, to, msg, reason),
      // The peer transport is TCP: it loses messages but never delivers one twice. A duplicated
      // forwarded proposal would apply a client's command twice (FINDINGS.md #8).
      mayDuplicate: (msg) => msg.type !== MessageType.Prop,
    });
    for (let k = 0; k < this.mode.keys; k++) {
      this.keys.push(`k${k}`);
      this.keyFreeAtMs.set(`k${k}`, 0);
    }
    // Founded without client URLs, as `tandem start` founds a cluster: each member publishes
    // its own (SelfPublication).
    const founders: Founder[] = (
      r?.founders ??
      Array.from({ length: this.params.voters }, (_, i) => ({
        id: i + 1,
        name: `n${i + 1}`,
        peerUrls: [`http://n${i + 1}:2380`],
        clientUrls: [],
      }))
    ).map((f) => ({ ...f, clientUrls: [] }));
    for (const f of founders) this.founders.set(f.id, f);
    // Voters found the configuration, hot standbys are its learners, warm and cold standbys
    // are registered outside it (as src/cli/node.ts bootstraps a new cluster).
    const { voters, learners } = foundingConfig(founders);
    // The founding state, as `tandem start` makes it: the registry at index 1, in the snapshot.
    const founding = new TandemStateMachine({
      backend: new DigestBackend(),
      founders,
      nowMs: () => 0,
    });
    founding.bootstrap();
    const data = founding.snapshot();
    for (const { id } of founders) {
      const storage = new Storage();
      RawNode.bootstrap(storage, voters, data, learners);
      this.hosts.set(id, new MemberHost(id, this, this.rng.fork(), storage));
    }
    // Late voters: processes with the founding state (as a member joining after `member add`
    // gets it from the leader), outside the configuration until the operator adds them.
    for (const late of r?.lateVoters ?? []) {
      const storage = new Storage();
      RawNode.bootstrap(storage, voters, data, learners);
      const rng = new Prng(options.seed ^ 0x6c617465 ^ late.id);
      this.hosts.set(late.id, new MemberHost(late.id, this, rng, storage));
      this.lateVoters.set(late.id, late);
      this.redundancy?.outages.markDown(late.id, 0); // down until its process starts
      this.founders.set(late.id, {
        id: late.id,
        name: `n${late.id}`,
        peerUrls: [`http://n${late.id}:2380`],
        clientUrls: [],
      });
    }
    this.newestConf = {
      index: 0,
      state: { voters, learners, votersOutgoing: [], learnersNext: [], autoLeave: false },
    };
    this.members = new MemberChecker(
      this.newestConf.state,
      this.params.electionTicks * this.params.tickMs,
    );
    this.forwardWorld = {
      after: (delayMs, fn) => this.queue.after(delayMs, fn),
      latencyMs: () => this.network.latencyMs(),
      connected: (from, to) => this.network.connected(from, to),
      facadeAt: (url) => {
        for (const host of this.hosts.values()) {
          if (simClientUrl(host.id) === url && host.assembled !== null) {
            return {
              id: host.id,
              facade: host.assembled.facade,
              run: (fn: () => void, channel: string) => host.runInProcess(fn, channel),
            };
          }
        }
        return null;
      },
    };
    if (r !== null) this.redundancyNemesis = new RedundancyNemesis(this.nemesisWorld(), r);
    const boot = this.hosts.get(1)!.durable.snapshot().metadata;
    for (let i = 1; i <= boot.index; i++) this.checker.seedCommitted(i, boot.term);
  }

  traceLine(text: string): void {
    if (this.trace.enabled) this.trace.line(this.queue.nowMs, text);
  }

  /** Member `id` as founded (its name, zone and standby mode). */
  founder(id: NodeId): Founder {
    const f = this.founders.get(id);
    assert(f !== undefined, `n${id} is not a founder`);
    return f;
  }

  /** Runs a client's continuation: a violation it finds ends the run at the next event. */
  guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.pendingFailure ??= error;
    }
  }

  private get electionMs(): number {
    return this.params.electionTicks * this.params.tickMs;
  }

  async run(maxSteps: number): Promise<void> {
    // Each node starts at its own phase of the tick.
    for (const host of this.hosts.values()) {
      if (this.lateVoters.has(host.id)) continue;
      this.queue.after(this.wl.float() * this.params.tickMs, () => {
        if (!host.up) host.start();
      });
    }
    for (const late of this.lateVoters.values()) {
      this.queue.at(late.atFraction * this.params.safetyMs, () => this.addLateVoter(late));
    }
    const p = this.params;
    this.every(p.proposeEveryMs, () => this.propose());
    this.every(p.readEveryMs, () => this.read());
    if (this.mode.compactEveryMs > 0) this.every(this.mode.compactEveryMs, () => this.compact());
    if (this.mode.leaseEveryMs > 0) {
      this.every(this.mode.leaseEveryMs, () => this.grantLease());
      this.every(Math.max(50, this.mode.leaseEveryMs / 3), () => this.keepLeasesAlive());
    }
    const r = this.mode.redundancy;
    if (this.redundancyNemesis !== null && r !== null) {
      const nemesis = this.redundancyNemesis;
      this.every(r.nemesisEveryMs, () => nemesis.act());
      // Flapping long enough to span a replacement (replaceAfter and then some).
      const flapStartMs = this.wl.float() * p.safetyMs * 0.3;
      const flapMs = r.policy.replaceAfterMs + this.wl.range(1_500, 4_000);
      nemesis.scheduleFlapper(flapStartMs, flapMs);
    } else {
      this.every(p.nemesisEveryMs, () => this.nemesis());
    }
    this.queue.at(p.safetyMs, () => this.startLiveness());
    let flushedAtMs = this.queue.nowMs;
    while (this.phase !== 'done') {
      if (!this.queue.runNext()) throw new Error('the event queue ran dry');
      this.steps++;
      if (this.clientOpsInFlight > 0 && this.queue.nowMs - flushedAtMs >= CONTINUATIONS_EVERY_MS) {
        await continuations();
        flushedAtMs = this.queue.nowMs;
      }
      if (this.pendingFailure !== null) throw this.pendingFailure;
      if (this.phase === 'safety' && this.steps >= maxSteps) this.startLiveness();
    }
  }

  private every(meanMs: number, fn: () => void): void {
    const delayMs = -meanMs * Math.log(1 - this.wl.float());
    this.queue.after(delayMs, () => {
      if (this.phase !== 'safety') return;
      fn();
      this.every(meanMs, fn);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Network glue

  private deliver(from: NodeId, to: NodeId, msg: Message): boolean {
    const host = this.hosts.get(to);
    if (host === undefined || !host.up) return false;
    this.trace.mix(TRACE_DELIVER, from, to, msg.type, msg.term, msg.index);
    if (this.trace.enabled) this.traceLine(`n${from}→n${to} ${formatMessage(msg)}`);
    if (!host.deliver(throughTheWire(msg))) return false;
    if (msg.type === MessageType.Snap) {
      this.reportLater(from, { kind: 'snapshot', peer: to, ok: true });
    }
    return true;
  }

  private dropped(from: NodeId, to: NodeId, msg: Message, reason: DropReason): void {
    this.trace.mix(TRACE_DROP, from, to, msg.type, DROP_REASON_CODE[reason]);
    if (this.trace.enabled) this.traceLine(`n${from}→n${to} ${formatMessage(msg)} (${reason})`);
    if (msg.type === MessageType.Snap) {
      this.reportLater(from, { kind: 'snapshot', peer: to, ok: false });
    }
    // A transport notices a dead connection; a lost packet it does not.
    if (reason !== 'lost') this.reportLater(from, { kind: 'unreachable', peer: to });
  }

  /** A process died: every peer's link to it is refused one latency later (`down` reports). */
  processGone(id: NodeId): void {
    for (const other of this.hosts.keys()) {
      if (other !== id) this.reportLater(other, { kind: 'down', peer: id });
    }
  }

  private reportLater(node: NodeId, report: PeerReport): void {
    const net = this.hosts.get(node)?.net ?? null;
    if (net === null) return;
    this.queue.after(this.network.latencyMs(), () => net.report(report));
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  private upHosts(): MemberHost[] {
    return [...this.hosts.values()].filter((h) => h.up);
  }

  leader(): MemberHost | null {
    let best: MemberHost | null = null;
    let bestTerm = -1;
    for (const host of this.hosts.values()) {
      const r = host.role();
      if (r?.leader && r.term > bestTerm) {
        best = host;
        bestTerm = r.term;
      }
    }
    return best;
  }

  /** The leader half of the time, any up member otherwise (followers forward or ask). */
  private pickTarget(): MemberHost | null {
    if (this.wl.chance(0.5)) {
      const leader = this.leader();
      if (leader !== null) return leader;
    }
    // Standbys serve no client traffic (DESIGN.md "Roles"): clients mostly use the voters,
    // and sometimes any member (a standby must refuse: standby-served).
    const anyMember = this.redundancy === null || this.wl.chance(this.mode.anyMemberShare);
    const up = anyMember
      ? this.upHosts()
      : this.upHosts().filter((h) => this.newestConf.state.voters.includes(h.id));
    return up.length === 0 ? null : this.wl.pick(up);
  }

  // -------------------------------------------------------------------------------------------
  // Redundancy mode

  /** A member applied a conf change entry (every member applies each one). */
  onConfApplied(node: NodeId, change: ConfChange, confState: ConfState, index: number): void {
    this.checker.onConfApplied(node, index, formatConf(confState));
    this.members.onConfApplied(index, confState);
    if (index <= this.newestConf.index) return;
    this.newestConf = { index, state: confState };
    this.confChangesApplied++;
    this.trace.mix(TRACE_CONF_APPLIED, node, index, confState.voters.length);
    this.traceLine(
      `n${node} applied conf change ${index} ${describe(change)}: ${formatConf(confState)}`,
    );
  }

  onPolicyEvent(node: NodeId, e: PolicyEvent): void {
    this.trace.mix(TRACE_POLICY, node, e.action.length, e.error === undefined ? 0 : 1);
    if (e.action === 'record-health' && e.error === undefined) return;
    this.traceLine(
      `n${node} policy ${e.action}: ${e.reason}${e.error ? ` (failed: ${e.error})` : ''}`,
    );
  }

  /**
   * The operator: etcdctl member add of voter `late.id` (AddNode, the member's attributes as the
   * context, as src/server/facade.ts proposes it), retried until a leader with no change pending
   * takes it and etcd's strict reconfiguration check passes on ground truth; its process starts
   * `startAfterMs` after the add (at the latest with the liveness phase).
   */
  private addLateVoter(late: LateVoter): void {
    if (this.phase !== 'safety') return;
    const retry = () => this.queue.after(4 * this.params.tickMs, () => this.addLateVoter(late));
    const leader = this.leader();
    const member = leader?.member ?? null;
    if (leader === null || member === null || leader.sm === null) return void retry();
    if (leader.sm.member(late.id) !== undefined) {
      this.traceLine(`operator: n${late.id} added; starting it in ${late.startAfterMs}ms`);
      this.queue.after(late.startAfterMs, () => {
        const host = this.hosts.get(late.id)!;
        if (this.phase === 'safety' && !host.up) host.start();
      });
      return;
    }
    const busy =
      member.confChangePending ||
      member.configuration.votersOutgoing.length > 0 ||
      leader.changesInFlight.size > 0 ||
      leader.unappliedConfIndex() !== null;
    if (busy || !this.redundancyNemesis!.admitsVoter(late.id)) return void retry();
    const change: ConfChange = {
      transition: ConfChangeTransition.Auto,
      changes: [{ type: ConfChangeType.AddNode, nodeId: late.id }],
      context: encodeAttributes({
        name: '',
        peerUrls: this.founder(late.id).peerUrls,
        clientUrls: [],
      }),
    };
    this.traceLine(`operator: member add n${late.id} at n${leader.id}`);
    this.operatorProposing = true;
    try {
      member.proposeConfChange(change, () => {});
    } finally {
      this.operatorProposing = false;
    }
    retry(); // until the registry has it (a proposal can be lost with its leader)
  }

  /** The leader's driver hands `change` to its member: the redundancy invariants, now. */
  onChangeProposed(host: MemberHost, change: ConfChange): void {
    if (this.operatorProposing) return;
    const member = host.member!;
    this.trace.mix(TRACE_CONF_PROPOSED, host.id, change.changes.length, member.commitIndex);
    this.traceLine(`n${host.id} proposes conf change ${describe(change)}`);
    this.redundancy!.onChangeProposed({
      leader: host.id,
      nowMs: this.queue.nowMs,
      change,
      config: member.configuration,
      commit: member.commitIndex,
      leaderSinceMs: host.leaderSinceMs ?? this.queue.nowMs,
      outstanding: host.changesInFlight.size,
      unappliedConfIndex: host.unappliedConfIndex(),
      lastIndexOf: (id) => this.hosts.get(id)!.durable.lastIndex(),
      promotedByPolicy: (id) => host.sm?.member(id)?.promotedByPolicy ?? false,
    });
    if (member.isLeader) this.redundancyNemesis?.onChangeProposed(host.id);
  }

  /** The driver's assertion fired during a policy round (MemberIo.onDutyError). */
  onDriverAssertion(host: MemberHost, error: AssertionError): void {
    const member = host.member;
    if (member === null) return;
    // The driver's last check before Raft (round.ts assertSafe): its planner lost the quorum.
    if (error.message.includes('conf change without a quorum')) {
      throw new InvariantViolation(
        'quorum-at-change',
        `leader n${host.id}'s driver planned a change its quorum check refused (its own assertion stopped it: ${error.message})`,
      );
    }
    const unapplied = host.unappliedConfIndex();
    const why =
      host.changesInFlight.size > 0
        ? `${host.changesInFlight.size} change(s) it handed to Raft are unresolved`
        : unapplied !== null
          ? `conf change entry ${unapplied} in its log is not applied`
          : member.configuration.votersOutgoing.length > 0
            ? 'its configuration is joint'
            : member.confChangePending
              ? 'Raft reports a change pending (a new leader counts every inherited entry)'
              : null;
    if (why === null) return;
    throw new InvariantViolation(
      'one-change-at-a-time',
      `leader n${host.id}'s driver planned a membership change while ${why} ` +
        `(its own assertion stopped it: ${error.message})`,
    );
  }

  /** Voter sets that must keep a live majority: every up member's configuration, pending ones. */
  private voterSets(): NodeId[][] {
    const sets = new Map<string, NodeId[]>();
    const add = (voters: readonly NodeId[]): void => {
      if (voters.length > 0) sets.set(voters.join(','), [...voters]);
    };
    add(this.newestConf.state.voters);
    add(this.newestConf.state.votersOutgoing);
    for (const host of this.hosts.values()) {
      const m = host.member;
      if (m === null) continue;
      add(m.configuration.voters);
      add(m.configuration.votersOutgoing);
      for (const incoming of host.changesInFlight.values()) add(incoming);
    }
    return [...sets.values()];
  }

  private nemesisWorld(): NemesisWorld {
    const ids = [...this.hosts.keys()];
    return {
      rng: this.wl,
      nowMs: () => this.queue.nowMs,
      after: (delayMs, fn) => this.queue.after(delayMs, fn),
      ids: () => ids,
      isUp: (id) => this.hosts.get(id)!.up,
      leader: () => this.leader()?.id ?? null,
      voterSets: () => this.voterSets(),
      crash: (id) => {
        this.crashes++;
        this.hosts.get(id)!.crash();
      },
      start: (id) => this.hosts.get(id)!.start(),
      setCuts: (links) => {
        this.network.healAll();
        for (const l of links) {
          const [from, to] = l.split('>').map(Number) as [number, number];
          this.network.cutLink(from, to);
        }
        this.redundancy!.outages.setCuts(links, this.queue.nowMs);
      },
      transfer: (from, to) => this.hosts.get(from)!.member?.transferLeader(to),
      trace: (text, code, a = 0, b = 0) => this.traceFault(text, code, a, b),
    };
  }

  private propose(): void {
    const now = this.queue.nowMs;
    const free = this.keys.filter((k) => this.keyFreeAtMs.get(k)! <= now);
    if (free.length === 0) return;
    const host = this.pickTarget();
    if (host === null) return;
    const key = this.wl.pick(free);
    const value = this.valueNext++;
    this.kv.onPutIssued(key, value);
    this.keyFreeAtMs.set(key, Number.POSITIVE_INFINITY);
    const ack: WriteAck = this.wl.chance(this.mode.ackAllShare) ? 'all' : 'quorum';
    this.trace.mix(TRACE_CLIENT, 1, host.id, value);
    this.traceLine(
      `client: put ${key}=v${value} at n${host.id}${ack === 'all' ? ' (ack=all)' : ''}`,
    );
    const ok = host.put(key, value, ack, (outcome, revision) => {
      this.trace.mix(TRACE_CLIENT, 2, host.id, value, outcome === 'ok' ? 1 : 0);
      this.traceLine(`client: put ${key}=v${value} at n${host.id}: ${outcome}`);
      if (outcome === 'ok') {
        if (ack === 'all') this.members.checkAckAll(revision!, (id) => this.durableLogOf(id));
        this.newestRevisionSeen = Math.max(this.newestRevisionSeen, revision!);
        this.kv.onPutAcked(key, value);
        this.keyFreeAtMs.set(key, this.queue.nowMs);
      } else {
        this.keyFreeAtMs.set(key, this.queue.nowMs + PUT_RETRY_COOLDOWN_MS);
      }
    });
    assert(ok, 'an up host refused a put');
  }

  /** A compaction a few revisions behind the newest acknowledged put (refusals are fine). */
  private compact(): void {
    if (this.newestRevisionSeen < 2) return;
    const host = this.pickTarget();
    if (host === null) return;
    const revision = Math.max(2, this.newestRevisionSeen - this.wl.range(0, 8));
    this.traceLine(`client: compact at ${revision} at n${host.id}`);
    const ok = host.compact(revision, (done) =>
      this.traceLine(`client: compact at ${revision} at n${host.id}: ${done ? 'ok' : 'failed'}`),
    );
    assert(ok, 'an up host refused a compaction');
  }

  private read(): void {
    const host = this.pickTarget();
    if (host === null) return;
    const key = this.wl.pick(this.keys);
    const kind: ReadKind = this.wl.chance(this.mode.serializableShare)
      ? 'serializable'
      : this.wl.chance(this.mode.leaseReadShare)
        ? 'lease'
        : this.wl.chance(this.mode.readTxnShare)
          ? 'txn'
          : 'linearizable';
    this.readOn(host, key, kind);
  }

  /** A read of `key` at `host`, checked when it answers (see read). */
  private readOn(host: MemberHost, key: string, kind: ReadKind): void {
    const id = this.readNext++;
    const floor = this.kv.ackedAt(key);
    this.trace.mix(TRACE_CLIENT, 3, host.id, id, READ_KIND_CODE[kind]);
    this.traceLine(`client: read r${id} ${key} at n${host.id} (${kind})`);
    host.read(key, kind, (value) => {
      this.trace.mix(TRACE_CLIENT, 4, host.id, id, value ?? -1);
      this.traceLine(
        `client: read r${id} ${key} at n${host.id}: ${value === null ? 'failed' : `v${value}`}`,
      );
      // A serializable read may be stale: only its member's role is checked (checkServed).
      if (value !== null && kind !== 'serializable') {
        this.kv.onReadServed(host.id, id, key, value, floor);
      }
    });
  }

  /** A new lease, kept alive by the workload until it abandons it (then it must expire). */
  private grantLease(): void {
    if (this.leasesLive.size >= WORKLOAD_LEASES_MAX) return;
    const host = this.pickTarget();
    if (host === null) return;
    const ttlSeconds = this.wl.range(1, 4);
    const startMs = this.queue.nowMs;
    this.traceLine(`client: lease grant ttl=${ttlSeconds}s at n${host.id}`);
    host.leaseGrant(ttlSeconds, (lease) => {
      this.trace.mix(TRACE_CLIENT, 5, host.id, lease === null ? 0 : 1);
      if (lease === null) return;
      this.traceLine(`client: lease ${lease.id.toString(16)} granted ttl=${lease.ttlSeconds}s`);
      this.members.onLeaseGranted(lease.id, lease.ttlSeconds, startMs);
      if (this.phase === 'safety') this.leasesLive.set(lease.id, lease.ttlSeconds);
    });
  }

  /** One keep-alive per live lease; now and then one is abandoned. */
  private keepLeasesAlive(): void {
    for (const id of [...this.leasesLive.keys()]) {
      if (this.wl.chance(0.05)) {
        this.leasesLive.delete(id);
        this.traceLine(`client: lease ${id.toString(16)} abandoned`);
        continue;
      }
      const host = this.pickTarget();
      if (host === null) return;
      const startMs = this.queue.nowMs;
      host.leaseKeepAlive(id, (ok) => {
        this.trace.mix(TRACE_CLIENT, 6, host.id, ok ? 1 : 0);
        if (ok) this.members.onKeepAliveAcked(id, startMs);
        else if (this.wl.chance(0.1)) this.leasesLive.delete(id); // gone, or give up
      });
    }
  }

  /** Member `id`'s durable log (the ack=all check). */
  private durableLogOf(id: NodeId): DurableLog {
    return this.hosts.get(id)!.durableLog();
  }

  // -------------------------------------------------------------------------------------------
  // Nemesis: only faults a quorum survives last (a lasting crash leaves a live majority).

  private nemesis(): void {
    if (this.mode.pauseRate > 0 && this.pauses.chance(this.mode.pauseRate)) {
      this.pauseSomeone();
      return;
    }
    const weights = this.params.faultWeights;
    let total = 0;
    for (const kind of MEMBER_FAULTS) total += weights[kind];
    if (total === 0) return;
    let r = this.wl.int(total);
    for (const kind of MEMBER_FAULTS) {
      if (r < weights[kind]) {
        this.fault(kind);
        return;
      }
      r -= weights[kind];
    }
  }

  private fault(kind: MemberFaultKind): void {
    const ids = [...this.hosts.keys()];
    const leader = this.leader();
    const up = this.upHosts();
    const pickPreferLeader = (hosts: MemberHost[]): MemberHost =>
      leader !== null && hosts.includes(leader) && this.wl.chance(0.5)
        ? leader
        : this.wl.pick(hosts);
    switch (kind) {
      case 'crash': {
        const down = ids.length - up.length;
        if (up.length === 0 || down + 1 > Math.floor((ids.length - 1) / 2)) return;
        const host = pickPreferLeader(up);
        this.crash(host, this.electionMs + this.wl.float() * this.params.safetyMs * 0.3);
        return;
      }
      case 'flash-crash': {
        if (up.length === 0) return;
        this.crash(pickPreferLeader(up), (this.wl.float() * this.electionMs) / 2);
        return;
      }
      case 'restart': {
        const down = [...this.hosts.values()].filter((h) => !h.up);
        if (down.length === 0) return;
        const host = this.wl.pick(down);
        this.traceFault(`restart n${host.id}`, 3, host.id);
        host.start();
        return;
      }
      case 'isolate': {
        const id = leader !== null && this.wl.chance(0.5) ? leader.id : this.wl.pick(ids);
        this.traceFault(`isolate n${id}`, 4, id);
        this.network.isolate(id, ids);
        this.healLater();
        return;
      }
      case 'split': {
        const shuffled = [...ids];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = this.wl.int(i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const minority = shuffled.slice(0, 1 + this.wl.int(Math.floor(ids.length / 2)));
        const rest = ids.filter((id) => !minority.includes(id));
        const symmetric = this.wl.chance(0.7);
        this.traceFault(`split ${minority.join(',')} | ${rest.join(',')}`, 5, minority.length);
        this.network.split(minority, rest, symmetric);
        this.healLater();
        return;
      }
      case 'asymmetric': {
        const a = this.wl.pick(ids);
        const b = this.wl.pick(ids);
        if (a === b) return;
        this.traceFault(`cut n${a}→n${b}`, 6, a, b);
        this.network.cutLink(a, b);
        this.healLater();
        return;
      }
      case 'heal':
        this.traceFault('heal', 7);
        this.network.healAll();
        return;
      case 'transfer': {
        if (leader === null) return;
        const to = this.wl.pick(ids.filter((id) => id !== leader.id));
        this.traceFault(`transfer leadership n${leader.id}→n${to}`, 8, to);
        leader.member!.transferLeader(to);
        return;
      }
    }
  }

  /**
   * SIGSTOP then SIGCONT: a member freezes for one to four election timeouts, the leader most
   * often (its lease is the one a pause may outlive: its ticks stop with it).
   */
  private pauseSomeone(): void {
    const leader = this.leader();
    const up = this.upHosts();
    if (up.length === 0) return;
    const host =
      leader !== null && this.pauses.chance(0.6) ? leader : up[this.pauses.int(up.length)]!;
    const ms = this.electionMs * (1 + this.pauses.float() * 3);
    this.traceFault(`pause n${host.id} for ${ms.toFixed(0)}ms`, 9, host.id);
    host.pause(ms);
    if (host !== leader || this.mode.leaseReadShare === 0) return;
    // Clients that still talk to the old leader: lease reads of every key late in its pause,
    // after the others may have elected a leader and acknowledged writes it has not seen.
    const lateMs = ms * (0.6 + this.pauses.float() * 0.4);
    this.queue.after(lateMs, () => {
      if (this.phase !== 'safety' || !host.up) return;
      for (const key of this.keys) this.readOn(host, key, 'lease');
    });
  }

  private crash(host: MemberHost, downMs: number): void {
    this.crashes++;
    this.traceFault(`crash n${host.id} for ${downMs.toFixed(0)}ms`, 1, host.id);
    host.crash();
    this.queue.after(downMs, () => {
      if (!host.up && this.phase === 'safety') host.start();
    });
  }

  private healLater(): void {
    this.queue.after(this.electionMs * (1 + this.wl.float() * 4), () => this.network.healAll());
  }

  private traceFault(text: string, code: number, a = 0, b = 0): void {
    this.trace.mix(TRACE_FAULT, code, a, b);
    this.traceLine(`nemesis: ${text}`);
  }

  // -------------------------------------------------------------------------------------------
  // Liveness phase: heal, restart, then a marker put must be applied everywhere, and every
  // member must hold every acknowledged put.

  private startLiveness(): void {
    if (this.phase !== 'safety') return;
    this.phase = 'liveness';
    this.network.healAll();
    this.redundancyNemesis?.stop();
    this.network.params = { ...this.network.params, lossRate: 0, duplicateRate: 0 };
    const r = this.mode.redundancy;
    if (r?.deadVoter === true) {
      // One voter fails for good: the policy must replace it (factor-restored).
      const leader = this.leader();
      const voters = (leader?.member?.configuration ?? this.newestConf.state).voters;
      this.deadId = this.wl.pick(voters);
      this.traceFault(`n${this.deadId} fails for good`, 30, this.deadId);
      this.hosts.get(this.deadId)!.crash();
    }
    for (const host of this.hosts.values()) if (!host.up && host.id !== this.deadId) host.start();
    this.traceLine('liveness phase: healed, restarted');
    const boundMs =
      r === null
        ? this.params.livenessMs
        : Math.max(restoreBoundWithLateVoters(r), this.params.livenessMs);
    const deadlineMs = this.queue.nowMs + boundMs;
    const probe = (): void => {
      if (this.phase !== 'liveness') return;
      if (this.queue.nowMs >= deadlineMs) this.failLiveness(boundMs);
      if (this.markerIndex === 0 && !this.markerInFlight) this.proposeMarker();
      if (
        this.markerIndex > 0 &&
        this.converged() &&
        this.factorRestored() === null &&
        this.unpublished() === null
      ) {
        this.finish();
        return;
      }
      this.queue.after(this.params.tickMs * 2, probe);
    };
    this.queue.after(0, probe);
  }

  private proposeMarker(): void {
    const host = this.leader() ?? this.wl.pick(this.upHosts());
    const value = this.valueNext++;
    this.markerInFlight = true;
    this.traceLine(`liveness: marker v${value} at n${host.id}`);
    host.put('marker', value, 'quorum', (outcome) => {
      this.markerInFlight = false;
      if (outcome === 'ok' && this.markerIndex === 0) this.markerIndex = host.appliedIndex;
    });
  }

  /**
   * Every member applied the marker, and all of them the same last index (puts still in flight
   * when the safety phase ended may commit after the marker: their acknowledgements count).
   */
  private converged(): boolean {
    const hosts = this.holders();
    if (hosts === null) return false;
    let max = this.markerIndex;
    for (const host of hosts) max = Math.max(max, host.appliedIndex);
    for (const host of hosts) if (host.appliedIndex < max) return false;
    return true;
  }

  /**
   * The members that hold the data: all of them, or in redundancy mode the up members of the
   * leader's configuration (standbys outside it get no log; the dead voter is down); null
   * without a leader.
   */
  private holders(): MemberHost[] | null {
    if (this.redundancy === null) return [...this.hosts.values()];
    const leader = this.leader();
    if (leader === null) return null;
    const inside = membersOf(leader.member!.configuration);
    return [...this.hosts.values()].filter((h) => h.up && inside.includes(h.id));
  }

  /**
   * The first holder the leader's registry does not show as it publishes itself (a member of
   * the configuration applies the log, so it retries until its publication is applied), or null.
   */
  private unpublished(): MemberHost | null {
    const registry = this.leader()?.sm;
    if (registry === undefined || registry === null) return null;
    for (const host of this.holders() ?? []) {
      const record = registry.member(host.id);
      if (record?.name !== this.founder(host.id).name) return host;
      if (record.clientUrls.length !== 1 || record.clientUrls[0] !== simClientUrl(host.id)) {
        return host;
      }
    }
    return null;
  }

  /** factor-restored's complaint, or null when restored (or not required). */
  private factorRestored(): string | null {
    const checker = this.redundancy;
    if (checker === null) return null;
    const leader = this.leader();
    if (leader === null) return 'no leader';
    const members = leader.sm!.allMembers();
    const standbys = members.filter((m) => m.role === 'standby' && m.id !== this.deadId).length;
    const config = leader.member!.configuration;
    const operatorVoters = members.filter(
      (m) => config.voters.includes(m.id) && !m.promotedByPolicy,
    ).length;
    return checker.factorRestored(
      config,
      (id) => this.hosts.get(id)?.up ?? false,
      standbys,
      operatorVoters,
    );
  }

  private finish(): void {
    this.traceLine(`liveness: marker at ${this.markerIndex} applied by every member`);
    const hashes: { node: number; applied: number; hash: string }[] = [];
    for (const host of this.holders()!) {
      this.kv.checkNoLostWrites(host.id, (key) => host.valueOf(key));
      hashes.push({ node: host.id, applied: host.appliedIndex, hash: host.hash() });
    }
    this.kv.checkFinalHashes(hashes);
    this.phase = 'done';
    this.livenessDoneMs = this.queue.nowMs;
  }

  private failLiveness(boundMs: number): never {
    const roles = [...this.hosts.values()]
      .map((h) => {
        const r = h.role();
        const name = r === null ? 'down' : r.leader ? 'leader' : 'up';
        return `n${h.id}:${name}${r === null ? '' : `@${r.term}`}/a${h.appliedIndex}`;
      })
      .join(' ');
    const factor = this.factorRestored();
    const unpublished = this.unpublished();
    if (this.markerIndex > 0 && this.converged() && factor === null && unpublished !== null) {
      this.members.checkPublished(unpublished.id, this.leader()!.sm!.member(unpublished.id), {
        name: this.founder(unpublished.id).name,
        clientUrls: [simClientUrl(unpublished.id)],
      });
    }
    if (this.markerIndex > 0 && this.converged() && factor !== null) {
      throw new InvariantViolation(
        'factor-restored',
        `${factor} ${boundMs}ms after the faults stopped` +
          `${this.deadId === null ? '' : ` (n${this.deadId} dead)`}: ` +
          `${formatConf(this.leader()?.member?.configuration ?? this.newestConf.state)} (${roles})`,
      );
    }
    throw new InvariantViolation(
      'liveness',
      `${this.markerIndex === 0 ? 'no marker put acknowledged' : `marker at ${this.markerIndex} not applied everywhere`} ` +
        `within ${boundMs}ms of healing (${roles})`,
    );
  }
}

function formatMessage(m: Message): string {
  let s = `${MESSAGE_TYPE_NAMES[m.type]} t=${m.term} i=${m.index} c=${m.commit}`;
  if (m.entries.length > 0)
    s += ` ents=${m.entries[0]!.index}..${m.entries[m.entries.length - 1]!.index}`;
  if (m.reject) s += ' reject';
  if (m.snapshot !== null) s += ` snap=${m.snapshot.metadata.index}`;
  return s;
}

// ---------------------------------------------------------------------------------------------
// One seed

export async function runMemberSeed(options: RunOptions): Promise<RunResult> {
  let sim: MemberSimulation | null = null;
  let failure: RunFailure | null = null;
  try {
    sim = new MemberSimulation(options);
    await sim.run(options.maxSteps ?? MAX_STEPS_DEFAULT);
  } catch (error) {
    failure = failureOf(error, sim?.queue.nowMs ?? 0);
  }
  const params =
    sim?.params ??
    memberParams(deriveParams(options.seed), options.seed, options.redundancy === true);
  const mode = sim?.mode ?? deriveMemberMode(options.seed, options.fault ?? null, params);
  return {
    seed: options.seed,
    params,
    paramsLine: formatMemberParams(params, mode),
    failure,
    traceHash: sim?.trace.hash() ?? '',
    traceLines: sim?.trace.lines ?? null,
    steps: sim?.steps ?? 0,
    virtualMs: sim?.queue.nowMs ?? 0,
    messagesSent: sim?.network.sentCount ?? 0,
    messagesDelivered: sim?.network.deliveredCount ?? 0,
    writesAcked: sim?.kv.putsAcked ?? 0,
    readsServed: sim?.kv.readsChecked ?? 0,
    crashes: sim?.crashes ?? 0,
    confChanges: sim?.confChangesApplied ?? 0,
    leaderTerms: sim?.checker.leaderTermsCount ?? 0,
    checks:
      (sim?.checker.checksCount ?? 0) +
      (sim?.kv.checksCount ?? 0) +
      (sim?.members.checksCount ?? 0) +
      (sim?.redundancy?.checksCount ?? 0),
    livenessMs:
      sim === null || sim.livenessDoneMs < 0 ? -1 : sim.livenessDoneMs - sim.params.safetyMs,
  };
}
