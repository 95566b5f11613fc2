/**
 * Test doubles for driving real Members on virtual time: a manual clock with an event queue, an
 * in-memory network between members, persistence that completes after a virtual disk delay, and
 * a tiny deterministic state machine (a list of applied commands).
 */

import { type Founder, foundingConfig } from '../../src/cluster/registry.js';
import type { Clock, TimerHandle } from '../../src/io/clock.js';
import type { MessageHandler, Network, PeerReportHandler } from '../../src/io/network.js';
import type { Done, PersistRequest, RaftPersistence } from '../../src/io/persistence.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { RawNode } from '../../src/raft/rawnode.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type {
  ConfChange,
  ConfState,
  HardState,
  Message,
  NodeId,
  Snapshot,
} from '../../src/raft/types.js';
import {
  type AssembledMember,
  assembleMember,
  type MemberIo,
  type MemberSpec,
} from '../../src/server/assemble.js';
import { Member } from '../../src/server/member.js';
import type { ApplyContext, ReplicatedStateMachine } from '../../src/server/state-machine.js';
import { TandemStateMachine } from '../../src/server/tandem-state-machine.js';
import { assert } from '../../src/util/assert.js';
import { Prng } from '../../src/util/prng.js';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class ManualClock implements Clock {
  nowMs = 0;
  private seq = 0;
  private timers: Timer[] = [];

  now(): number {
    return this.nowMs;
  }
  wallNow(): number {
    return Date.UTC(2026, 0, 1) + this.nowMs;
  }
  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const t: Timer = { at: this.nowMs + delayMs, seq: this.seq++, fn: callback, cancelled: false };
    this.timers.push(t);
    return t;
  }
  clearTimeout(handle: TimerHandle): void {
    (handle as Timer).cancelled = true;
  }
  defer(callback: () => void): void {
    this.setTimeout(callback, 0);
  }
  /** Runs every event due up to now + ms, in time order. */
  advance(ms: number): void {
    const end = this.nowMs + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      let next: Timer | null = null;
      for (const t of this.timers) {
        if (
          t.at <= end &&
          (next === null || t.at < next.at || (t.at === next.at && t.seq < next.seq))
        )
          next = t;
      }
      if (next === null) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.nowMs = Math.max(this.nowMs, next.at);
      next.fn();
    }
    this.nowMs = end;
  }
}

export class LoopbackHub {
  readonly handlers = new Map<NodeId, MessageHandler>();
  readonly cut = new Set<NodeId>();
  /** Per member: sends since its last Network.flush() (what would still wait for the turn). */
  readonly unflushedSends = new Map<NodeId, number>();
  constructor(
    readonly clock: ManualClock,
    readonly latencyMs = 1,
  ) {}
  network(id: NodeId): Network {
    const hub = this;
    return {
      send(to: NodeId, messages: readonly Message[]): void {
        hub.unflushedSends.set(id, (hub.unflushedSends.get(id) ?? 0) + 1);
        if (hub.cut.has(id) || hub.cut.has(to)) return;
        hub.clock.setTimeout(() => {
          if (hub.cut.has(id) || hub.cut.has(to)) return;
          const h = hub.handlers.get(to);
          if (h !== undefined) for (const m of messages) h(m);
        }, hub.latencyMs);
      },
      onMessage(handler: MessageHandler): void {
        hub.handlers.set(id, handler);
      },
      flush(): void {
        hub.unflushedSends.set(id, 0);
      },
      onReport(_handler: PeerReportHandler): void {},
      setPeer(): void {},
      removePeer(): void {},
      close: async () => {},
    };
  }
}

export class VirtualPersistence implements RaftPersistence {
  saves = 0;
  lastHardState: HardState | null = null;
  failNext: Error | null = null;
  constructor(
    readonly clock: ManualClock,
    readonly diskMs = 1,
  ) {}
  save(request: PersistRequest, done: Done): void {
    const hs = request.hardState;
    this.saves++;
    const failure = this.failNext;
    this.failNext = null;
    this.clock.setTimeout(() => {
      if (hs !== null) this.lastHardState = hs;
      done(failure);
    }, this.diskMs);
  }
  saveSnapshot(_snapshot: Snapshot, done: Done): void {
    this.clock.setTimeout(() => done(null), this.diskMs);
  }
  release(): void {}
}

export class ListStateMachine implements ReplicatedStateMachine {
  applied = 0;
  commands: string[] = [];
  /** Deferred work a command "work:N" leaves (a large compaction's deletes, say). */
  backgroundLeft = 0;
  /** Each backgroundStep: the applied index then, and whether it ran inside a transaction. */
  backgroundSteps: { applied: number; inTransaction: boolean }[] = [];
  /** Called after each background step (a test pauses the member from it). */
  onBackgroundStep: (() => void) | null = null;
  private inTransaction = false;
  appliedIndex(): number {
    return this.applied;
  }
  apply(ctx: ApplyContext, command: Uint8Array): unknown {
    this.applied = ctx.index;
    const text = new TextDecoder().decode(command);
    this.commands.push(text);
    if (text.startsWith('work:')) this.backgroundLeft += Number(text.slice(5));
    return `ok:${text}`;
  }
  backgroundPending(): boolean {
    return this.backgroundLeft > 0;
  }
  backgroundStep(): void {
    assert(this.backgroundLeft > 0, 'a background step with nothing to do');
    this.backgroundLeft--;
    this.backgroundSteps.push({ applied: this.applied, inTransaction: this.inTransaction });
    this.onBackgroundStep?.();
  }
  applyNoop(ctx: ApplyContext): void {
    this.applied = ctx.index;
  }
  applyConfChange(ctx: ApplyContext, _change: ConfChange, _cs: ConfState): void {
    this.applied = ctx.index;
  }
  transaction<T>(fn: () => T): T {
    this.inTransaction = true;
    try {
      return fn();
    } finally {
      this.inTransaction = false;
    }
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify(this.commands));
  }
  restore(snapshot: Snapshot): void {
    this.applied = snapshot.metadata.index;
    this.commands =
      snapshot.data.length === 0 ? [] : JSON.parse(new TextDecoder().decode(snapshot.data));
  }
}

export interface TestCluster {
  clock: ManualClock;
  hub: LoopbackHub;
  members: Map<NodeId, Member>;
  machines: Map<NodeId, ListStateMachine>;
  persistence: Map<NodeId, VirtualPersistence>;
}

export function newMember(
  c: Pick<TestCluster, 'clock' | 'hub'>,
  id: NodeId,
  storage: MemoryStorage,
  sm: ListStateMachine,
  p: VirtualPersistence,
  seed: number,
  snapshotEveryEntries: number,
): Member {
  return new Member({
    id,
    clock: c.clock,
    network: c.hub.network(id),
    persistence: p,
    storage,
    stateMachine: sm,
    random: new Prng(seed * 31 + id),
    timing: { tickMs: 10, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 2000 },
    snapshotEveryEntries,
    compactionKeepEntries: 5,
  });
}

/**
 * A new Member over the stopped one's durable log and state machine (a process restart). The
 * log is copied: a save the old incarnation still finishes must not land in the new one's.
 */
export function restartMember(c: TestCluster, id: NodeId): Member {
  const old = c.members.get(id)!;
  assert(!old.running, `member ${id} restarted while running`);
  const storage = (old as unknown as { storage: MemoryStorage }).storage.clone();
  const m = newMember(c, id, storage, c.machines.get(id)!, c.persistence.get(id)!, 99, 1000);
  c.members.set(id, m);
  m.start();
  return m;
}

export function startCluster(size: number, seed = 1, snapshotEveryEntries = 1000): TestCluster {
  const clock = new ManualClock();
  const hub = new LoopbackHub(clock);
  const ids = Array.from({ length: size }, (_, i) => i + 1);
  const members = new Map<NodeId, Member>();
  const machines = new Map<NodeId, ListStateMachine>();
  const persistence = new Map<NodeId, VirtualPersistence>();
  const rng = new Prng(seed);
  for (const id of ids) {
    const storage = new MemoryStorage();
    RawNode.bootstrap(storage, ids);
    const sm = new ListStateMachine();
    sm.applied = 1;
    const p = new VirtualPersistence(clock);
    const m = newMember(
      { clock, hub },
      id,
      storage,
      sm,
      p,
      seed + rng.int(1000),
      snapshotEveryEntries,
    );
    members.set(id, m);
    machines.set(id, sm);
    persistence.set(id, p);
  }
  for (const m of members.values()) m.start();
  return { clock, hub, members, machines, persistence };
}

export function leaderOf(c: TestCluster): Member | undefined {
  return [...c.members.values()].find((m) => m.running && m.isLeader);
}

export function proposeText(m: Member, text: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    m.propose(new TextEncoder().encode(text), (err, v) =>
      err === null ? resolve(v) : reject(err),
    ),
  );
}

/** What each test member may set beyond the defaults: its spec, and io observers. */
export type PolicyNodeOptions = Partial<MemberSpec> & Pick<MemberIo, 'onPolicyEvent'>;

/**
 * Whole members (src/server/assemble.ts: loop, façade, role truth, driver) over the KV state
 * machine, founded with the roles in `founders` (voters, hot standbys as learners, warm/cold
 * outside the configuration), on the clock and hub given: the setup of the redundancy-policy
 * tests. `options(id)` adds each member's own settings (policy, zone, event hooks); `seed`
 * varies the members' random streams.
 */
export function startPolicyCluster(
  clock: ManualClock,
  hub: LoopbackHub,
  founders: readonly Founder[],
  seed: number,
  options: (id: NodeId) => PolicyNodeOptions,
): Map<NodeId, AssembledMember> {
  const { voters, learners } = foundingConfig(founders);
  const nodes = new Map<NodeId, AssembledMember>();
  for (const founder of founders) {
    const { id } = founder;
    const state = new TandemStateMachine({
      backend: new MemoryBackend(),
      founders,
      nowMs: () => clock.now(),
    });
    state.bootstrap();
    const storage = new MemoryStorage();
    RawNode.bootstrap(storage, voters, state.snapshot(), learners);
    const { onPolicyEvent, ...spec } = options(id);
    const node = assembleMember(
      {
        id,
        clusterId: 1n,
        name: `n${id}`,
        clientUrls: [`http://127.0.0.1:${100 + id}`],
        standby: { mode: founder.standbyMode ?? 'hot', snapshotEveryMs: 60_000 },
        timing: { tickMs: 10, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 2000 },
        snapshotEveryEntries: 1000,
        compactionKeepEntries: 100,
        policy: null,
        ...spec,
      },
      {
        clock,
        network: hub.network(id),
        persistence: new VirtualPersistence(clock),
        storage,
        state,
        random: new Prng(seed * id),
        ...(onPolicyEvent === undefined ? {} : { onPolicyEvent }),
      },
    );
    node.start();
    nodes.set(id, node);
  }
  return nodes;
}
