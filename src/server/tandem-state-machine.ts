/**
 * Everything a member replicates, behind one `ReplicatedStateMachine`: the MVCC key-value store,
 * the lease table and the member registry. One command = one backend transaction that also
 * records the applied index, so a crash never applies an entry twice or half (the lease table
 * and the registry live in the store's meta bucket, in that same transaction).
 *
 * Commands are a one-byte kind followed by the kind's payload:
 *
 *   1 kv          a KV request as KvStateMachine.encode made it
 *   2 lease grant msgpack [id (decimal string), ttlSeconds]
 *   3 lease revoke msgpack [id]
 *   4 checkpoints msgpack [[id, remainingTtlSeconds], ...]
 *   5 attributes  msgpack [memberId, name, clientUrls]  (a member publishes itself, as etcd's)
 *   6 peer urls   msgpack [memberId, peerUrls]          (MemberUpdate)
 *   7 registry    a registry command (src/cluster encodeRegistryCommand): role, standby mode,
 *                 zone, health records. One that does not fit the registry (a RegistryError) is a
 *                 rejected no-op, the same on every member since the registry is replicated.
 *   8 alarm       msgpack [action, memberId (decimal), alarmType]  (etcd's Alarm ACTIVATE and
 *                 DEACTIVATE, alarms.ts). While a NOSPACE alarm is raised, puts, txns with puts
 *                 and lease grants are refused with NO_SPACE (etcd's applierV3Capped).
 *   9 auth        an auth command (src/kv/auth/command.ts): a management op with its header, or
 *                 Authenticate with the proposer's token prefix (the token is "<prefix>.<index>",
 *                 held in memory by every member that applies it, as etcd's simple tokens).
 *  10 authorized  u16 length, msgpack [username, authRevision], then another command: a client
 *                 request proposed with credentials, checked at the API edge under that auth
 *                 revision; refused with AUTH_OLD_REVISION when the auth store changed since
 *                 (etcd's isOpPermitted check at apply). While auth is enabled, a kv command
 *                 without credentials is refused with USER_EMPTY, as etcd's empty header is.
 *
 *  11 deduped   u8 id length, a request id, then a kind-1 kv command: applied once per id and
 *                user; a retry answered with the first result (dedupe.ts: layout, window, table).
 *                Inside kind 10, the id is the user's; alone, it is refused with USER_EMPTY
 *                while auth is enabled, as kind 1.
 *
 * The auth store lives in the meta bucket too (one record), written in the entry's transaction.
 *
 * Deterministic: every member applying the same entries holds the same `hash()`. Time enters
 * only the primary lessor's deadlines, which are not replicated state.
 */
import { pack, unpack } from 'msgpackr';
import {
  decodeRegistryCommand,
  encodeRegistryCommand,
  type RegistryCommand,
  RegistryError,
} from '../cluster/commands.js';
import {
  type Founder,
  type MemberInfo,
  type MemberRecord,
  MemberRegistry,
} from '../cluster/registry.js';
import type {
  KvRequest,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../kv/api-types.js';
import {
  type AuthCommand,
  AuthError,
  type AuthHeader,
  type AuthOpResult,
  AuthStore,
  decodeAuthCommand,
  encodeAuthCommand,
  isAuthWrite,
  SimpleTokens,
} from '../kv/auth/index.js';
import type { Backend } from '../kv/backend/backend.js';
import { KvError } from '../kv/errors.js';
import { LeaseError, LeaseErrorCode } from '../kv/lease/errors.js';
import {
  type LeaseCheckpoint,
  type LeaseGrant,
  Lessor,
  type LessorOptions,
} from '../kv/lease/lessor.js';
import { LEASE_ID_MAX, LEASE_TTL_SECONDS_MAX, LEASES_MAX_DEFAULT } from '../kv/lease/limits.js';
import type { KvHash, MvccStore, StoreBugName } from '../kv/mvcc/store.js';
import {
  type ApplyResult,
  KvStateMachine,
  type KvStateMachineOptions,
} from '../kv/state-machine.js';
import type {
  CommitSubscription,
  KeyRange,
  KvEvent,
  LeaseId,
  WatchableStore,
} from '../kv/types.js';
import { WatchHub } from '../kv/watch/hub.js';
import type { ConfChange, ConfState, Snapshot } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { prefixEnd } from '../util/bytes.js';
import {
  AlarmAction,
  type AlarmMember,
  AlarmSet,
  AlarmType,
  decodeAlarmPayload,
  encodeAlarmPayload,
} from './alarms.js';
import {
  DEDUPE_LIMITS_DEFAULT,
  type DedupeLimits,
  DedupeTable,
  decodeDedupedPayload,
  encodeDedupedPayload,
} from './dedupe.js';
import { type EtcdSnapshotFile, etcdSnapshotFile } from './etcd-snapshot.js';
import type { Member } from './member.js';
import {
  leaseKey,
  META_ALARMS,
  META_AUTH,
  META_LEASE_IDS,
  META_LEASE_PREFIX,
  META_REGISTRY,
} from './meta-keys.js';
import type { ApplyContext, ReplicatedStateMachine } from './state-machine.js';

export const CommandKind = {
  Kv: 1,
  LeaseGrant: 2,
  LeaseRevoke: 3,
  LeaseCheckpoints: 4,
  MemberAttributes: 5,
  MemberPeerUrls: 6,
  Registry: 7,
  Alarm: 8,
  Auth: 9,
  Authorized: 10,
  Deduped: 11,
} as const;
export type CommandKind = (typeof CommandKind)[keyof typeof CommandKind];

const EMPTY = new Uint8Array(0);
/** Records per snapshot slice: packing one takes a few milliseconds of the event loop. */
const SNAPSHOT_SLICE_BYTES = 256 * 1024;

// A msgpack array of bin values, written by hand so it can be filled a part at a time (msgpackr
// unpacks it like its own `pack(parts)`).
function packedListBytes(parts: readonly Uint8Array[]): number {
  let bytes = parts.length < 16 ? 1 : parts.length < 0x10000 ? 3 : 5;
  for (const p of parts) bytes += (p.length < 0x100 ? 2 : p.length < 0x10000 ? 3 : 5) + p.length;
  return bytes;
}

function writeListHeader(out: Uint8Array, count: number): number {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (count < 16) {
    out[0] = 0x90 | count;
    return 1;
  }
  if (count < 0x10000) {
    out[0] = 0xdc;
    view.setUint16(1, count);
    return 3;
  }
  out[0] = 0xdd;
  view.setUint32(1, count);
  return 5;
}

function writeBin(out: Uint8Array, at: number, part: Uint8Array): number {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const n = part.length;
  if (n < 0x100) {
    out[at] = 0xc4;
    out[at + 1] = n;
    at += 2;
  } else if (n < 0x10000) {
    out[at] = 0xc5;
    view.setUint16(at + 1, n);
    at += 3;
  } else {
    out[at] = 0xc6;
    view.setUint32(at + 1, n);
    at += 5;
  }
  out.set(part, at);
  return at + n;
}
/** Bytes of an authorized command's header at most (a username and a number). */
const AUTH_HEADER_BYTES_MAX = 0xffff;

/** What applying a command gives its proposer. */
export type CommandResult =
  | ApplyResult
  | { readonly kind: 'leaseGranted'; readonly grant: LeaseGrant }
  | { readonly kind: 'leaseRevoked'; readonly id: LeaseId; readonly revision: number }
  | { readonly kind: 'leaseRejected'; readonly error: LeaseError }
  | { readonly kind: 'registryRejected'; readonly error: RegistryError }
  /** An alarm change: the alarm raised or cleared (none when nothing changed, as etcd's). */
  | { readonly kind: 'alarm'; readonly alarms: readonly AlarmMember[] }
  /** An auth op applied (gets and lists carry what they read). */
  | { readonly kind: 'auth'; readonly result: AuthOpResult }
  | { readonly kind: 'authenticated'; readonly token: string }
  /** An auth op, authenticate or authorized request refused, nothing changed. */
  | { readonly kind: 'authRejected'; readonly error: AuthError }
  | { readonly kind: 'done' };

export interface TandemStateMachineOptions {
  readonly backend: Backend;
  /** The founding members, for a brand-new cluster (ignored when the backend has a registry). */
  readonly founders?: readonly Founder[];
  readonly lessor?: Partial<LessorOptions>;
  /** Milliseconds for the primary lessor's deadlines (the member's clock). */
  readonly nowMs: () => number;
  /** The request-id table's bounds (dedupe.ts); the same on every member of a cluster. */
  readonly dedupe?: Partial<DedupeLimits>;
  /**
   * Records a compaction deletes per backend transaction (MvccStore's COMPACT_BATCH_RECORDS);
   * the simulator makes it small so that its compactions run in batches.
   */
  readonly compactBatchRecords?: number;
  /** The simulator's injected store bugs (never in production). */
  readonly storeBugs?: ReadonlySet<StoreBugName>;
}

export function encodeKvCommand(kvCommand: Uint8Array): Uint8Array {
  return withKind(CommandKind.Kv, kvCommand);
}

/**
 * `leasesMax`: the proposer's limits.leasesMax, carried in the entry so that every member
 * refuses the grant alike whatever its own config says (entries without it have no limit).
 */
export function encodeLeaseGrant(
  id: LeaseId,
  ttlSeconds: number,
  leasesMax: number = LEASES_MAX_DEFAULT,
): Uint8Array {
  return withKind(CommandKind.LeaseGrant, pack([id.toString(), ttlSeconds, leasesMax]));
}

export function encodeLeaseRevoke(id: LeaseId): Uint8Array {
  return withKind(CommandKind.LeaseRevoke, pack([id.toString()]));
}

export function encodeLeaseCheckpoints(checkpoints: readonly LeaseCheckpoint[]): Uint8Array {
  return withKind(
    CommandKind.LeaseCheckpoints,
    pack(checkpoints.map((c) => [c.id.toString(), c.remainingTtlSeconds])),
  );
}

export function encodeMemberAttributes(id: number, name: string, clientUrls: string[]): Uint8Array {
  return withKind(CommandKind.MemberAttributes, pack([id, name, clientUrls]));
}

export function encodeMemberPeerUrls(id: number, peerUrls: string[]): Uint8Array {
  return withKind(CommandKind.MemberPeerUrls, pack([id, peerUrls]));
}

/** etcd's Alarm ACTIVATE or DEACTIVATE as a log entry. */
export function encodeAlarm(action: AlarmAction, memberId: bigint, alarm: AlarmType): Uint8Array {
  return withKind(CommandKind.Alarm, encodeAlarmPayload(action, memberId, alarm));
}

/** An auth op or Authenticate as a log entry. */
export function encodeAuth(command: AuthCommand): Uint8Array {
  return withKind(CommandKind.Auth, encodeAuthCommand(command));
}

/** `inner` proposed with credentials (see kind 10 above). */
export function encodeAuthorized(header: AuthHeader, inner: Uint8Array): Uint8Array {
  const head = pack([header.username, header.revision]);
  assert(head.length <= AUTH_HEADER_BYTES_MAX, 'an auth header fits its u16 length');
  const out = new Uint8Array(3 + head.length + inner.length);
  out[0] = CommandKind.Authorized;
  out[1] = head.length >>> 8;
  out[2] = head.length & 0xff;
  out.set(head, 3);
  out.set(inner, 3 + head.length);
  return out;
}

/** A kv command applied at most once per request id (kind 11; dedupe.ts). */
export function encodeDeduped(requestId: string, kvCommand: Uint8Array): Uint8Array {
  assert(kvCommand[0] === CommandKind.Kv, 'only kv commands carry a request id');
  return withKind(CommandKind.Deduped, encodeDedupedPayload(requestId, kvCommand));
}

/** A registry command as a log entry of its own (the policy's and a member's publishes). */
export function encodeRegistryEntry(command: RegistryCommand): Uint8Array {
  return withKind(CommandKind.Registry, encodeRegistryCommand(command));
}

/**
 * A stable WatchableStore over whichever MvccStore is current: installing a snapshot replaces
 * the store object, and the watch hub must keep its subscription.
 */
class CurrentStore implements WatchableStore {
  private readonly listeners = new Map<
    (revision: number, events: readonly KvEvent[]) => void,
    CommitSubscription
  >();
  private unsubscribe: () => void = () => {};
  constructor(public store: MvccStore) {
    this.attach(store);
  }
  attach(store: MvccStore): void {
    this.unsubscribe();
    this.store = store;
    this.unsubscribe = store.onCommit(
      (rev, events) => {
        for (const l of this.listeners.keys()) l(rev, events);
      },
      { prevKvWanted: () => this.prevKvWanted() },
    );
  }
  private prevKvWanted(): boolean {
    for (const s of this.listeners.values()) {
      if (s.prevKvWanted === undefined || s.prevKvWanted()) return true;
    }
    return false;
  }
  currentRevision(): number {
    return this.store.currentRevision();
  }
  compactRevision(): number {
    return this.store.compactRevision();
  }
  eventsBetween(
    range: KeyRange,
    start: number,
    end: number,
    limit: number,
    withPrevKv: boolean,
  ): readonly KvEvent[] {
    return this.store.eventsBetween(range, start, end, limit, withPrevKv);
  }
  onCommit(
    listener: (revision: number, events: readonly KvEvent[]) => void,
    subscription: CommitSubscription = {},
  ): () => void {
    this.listeners.set(listener, subscription);
    return () => this.listeners.delete(listener);
  }
}

export class TandemStateMachine implements ReplicatedStateMachine {
  readonly lessor: Lessor;
  readonly watchHub: WatchHub;
  private kv: KvStateMachine;
  private registry: MemberRegistry;
  private alarmSet = new AlarmSet();
  private authStore = new AuthStore();
  /** Applied request ids (replicated, in the meta bucket): dedupe.ts. */
  readonly dedupe: DedupeTable;
  /** Simple tokens made by applied Authenticate entries: this member's memory only. */
  readonly simpleTokens = new SimpleTokens();
  private readonly backend: Backend;
  private readonly current: CurrentStore;
  private readonly nowMs: () => number;
  /** Called after the registry's peers may have changed (the transport re-reads them). */
  onPeersChanged: (() => void) | null = null;

  /** How the KV state machine is opened, at start and on each snapshot restore. */
  private readonly kvOptions: KvStateMachineOptions;

  constructor(options: TandemStateMachineOptions) {
    this.backend = options.backend;
    this.nowMs = options.nowMs;
    this.lessor = new Lessor(options.lessor ?? {});
    const batch = options.compactBatchRecords;
    this.kvOptions = {
      lessor: this.lessor,
      ...(batch === undefined ? {} : { compactBatchRecords: batch }),
      ...(options.storeBugs === undefined ? {} : { bugs: options.storeBugs }),
    };
    this.dedupe = new DedupeTable({ ...DEDUPE_LIMITS_DEFAULT, ...options.dedupe });
    this.registry = MemberRegistry.bootstrap([]);
    this.loadSideState(options.founders ?? []);
    this.kv = KvStateMachine.open(this.backend, this.kvOptions);
    this.current = new CurrentStore(this.kv.store);
    this.watchHub = new WatchHub(this.current);
  }

  /** The lease table and registry from the meta bucket; before the store re-attaches keys. */
  private loadSideState(founders: readonly Founder[]): void {
    const registry = this.backend.get('meta', META_REGISTRY);
    this.registry =
      registry === undefined
        ? MemberRegistry.bootstrap(founders)
        : MemberRegistry.fromSnapshot(unpack(registry));
    const leases: { id: string; ttlSeconds: number; remainingTtlSeconds: number; keys: [] }[] = [];
    this.backend.scan('meta', META_LEASE_PREFIX, prefixEnd(META_LEASE_PREFIX), (key, value) => {
      const [ttlSeconds, remainingTtlSeconds] = unpack(value) as [number, number];
      const id = new TextDecoder().decode(key.subarray(META_LEASE_PREFIX.length));
      leases.push({ id, ttlSeconds, remainingTtlSeconds, keys: [] });
      return true;
    });
    this.alarmSet = AlarmSet.decode(this.backend.get('meta', META_ALARMS));
    this.authStore = AuthStore.decode(this.backend.get('meta', META_AUTH));
    this.authStore.onUserInvalidated = (name) => this.simpleTokens.invalidateUser(name);
    this.dedupe.load(this.backend);
    const generated = this.backend.get('meta', META_LEASE_IDS);
    this.lessor.restore({
      version: 1,
      generatedIds: generated === undefined ? 0 : (unpack(generated) as number),
      leases,
    });
  }

  // -------------------------------------------------------------------------------------------
  // ReplicatedStateMachine

  appliedIndex(): number {
    return this.kv.appliedIndex();
  }

  transaction<T>(fn: () => T): T {
    return this.kv.store.batch(fn);
  }

  apply(ctx: ApplyContext, command: Uint8Array): CommandResult {
    if (command.length === 0) return this.applyNoopResult(ctx);
    const payload = command.subarray(1);
    switch (command[0]) {
      case CommandKind.Kv:
        if (this.authStore.enabled) return this.authRejected(ctx, new AuthError('USER_EMPTY'));
        return this.kv.apply(ctx.index, payload, this.alarmSet.has(AlarmType.NoSpace));
      case CommandKind.LeaseGrant:
        return this.applyLeaseGrant(ctx, payload);
      case CommandKind.LeaseRevoke:
        return this.applyLeaseRevoke(ctx, payload);
      case CommandKind.LeaseCheckpoints:
        return this.applyCheckpoints(ctx, payload);
      case CommandKind.MemberAttributes:
        return this.applyAttributes(ctx, payload);
      case CommandKind.MemberPeerUrls:
        return this.applyPeerUrls(ctx, payload);
      case CommandKind.Registry:
        return this.applyRegistryCommand(ctx, payload);
      case CommandKind.Alarm:
        return this.applyAlarm(ctx, payload);
      case CommandKind.Auth:
        return this.applyAuth(ctx, payload);
      case CommandKind.Authorized:
        return this.applyAuthorized(ctx, payload);
      case CommandKind.Deduped:
        if (this.authStore.enabled) return this.authRejected(ctx, new AuthError('USER_EMPTY'));
        return this.applyDeduped(ctx, payload, '');
      default:
        // An unknown kind (a newer member's command): the same no-op on every member.
        return this.applyNoopResult(ctx);
    }
  }

  /**
   * The founding state of a new cluster at index 1 (Raft's bootstrap snapshot index): the
   * registry of founding members, durable, so that the snapshot taken next describes index 1.
   */
  bootstrap(): void {
    assert(this.appliedIndex() === 0, 'bootstrap of a state machine that applied entries');
    this.kv.store.write(1, (txn) => {
      txn.putMeta(META_REGISTRY, pack(this.registry.toSnapshot()));
    });
  }

  applyNoop(ctx: ApplyContext): void {
    this.applyNoopResult(ctx);
  }

  applyConfChange(ctx: ApplyContext, change: ConfChange, confState: ConfState): void {
    // The context carries either member attributes (etcd's MemberAdd) or the policy's registry
    // commands (a promotion and its record land in one entry): the registry reads both.
    this.kv.store.write(ctx.index, (txn) => {
      this.registry.applyConfChange(confState, change);
      txn.putMeta(META_REGISTRY, pack(this.registry.toSnapshot()));
    });
    this.onPeersChanged?.();
  }

  snapshot(): Uint8Array {
    const snap = this.kv.snapshot();
    return pack([...snap.chunks]);
  }

  /**
   * The state as of now as an etcd snapshot (a bbolt file, etcd-snapshot.ts), produced lazily
   * from a read view: what the Snapshot RPC and backups stream.
   */
  streamEtcdSnapshot(): EtcdSnapshotFile {
    const store = this.kv.store;
    return etcdSnapshotFile({
      view: this.backend.readView(),
      appliedIndex: store.appliedIndex(),
      revision: store.currentRevision(),
      compactRevision: store.compactRevision(),
      finishedCompactRevision: store.finishedCompactRevision(),
      members: this.registry.list(),
      removedMemberIds: this.registry.removedIds(),
    });
  }

  /** As `snapshot`, a chunk (SNAPSHOT_SLICE_BYTES of records) per slice (see the interface). */
  snapshotInSlices(
    schedule: (next: (go: boolean) => void) => void,
    done: (data: Uint8Array) => void,
  ): void {
    const snap = this.kv.snapshot(SNAPSHOT_SLICE_BYTES);
    const chunks = snap.chunks[Symbol.iterator]();
    const parts: Uint8Array[] = [];
    let finished = false;
    // Then the parts are copied into one msgpack list (restore reads it as it reads snapshot()'s),
    // a part per slice too: writing a fresh multi-megabyte buffer faults its pages in, which on
    // a VM costs tens of milliseconds per few megabytes.
    let out: Uint8Array | null = null;
    let copied = 0;
    let at = 0;
    const slice = (go = true): void => {
      assert(!finished, 'a finished snapshot sliced again');
      if (!go) {
        finished = true;
        if (out === null) chunks.return?.();
        snap.release();
        return;
      }
      if (out === null) {
        const next = chunks.next();
        if (next.done !== true) {
          parts.push(next.value);
          schedule(slice);
          return;
        }
        out = new Uint8Array(packedListBytes(parts));
        at = writeListHeader(out, parts.length);
      }
      if (copied < parts.length) {
        at = writeBin(out, at, parts[copied]!);
        parts[copied++] = EMPTY; // the copy is all that is needed now
        schedule(slice);
        return;
      }
      assert(at === out.length, 'the packed snapshot is exactly filled');
      finished = true;
      done(out);
    };
    slice();
  }

  /** A compaction too large to delete in its own apply deletes its records in batches. */
  backgroundPending(): boolean {
    return this.kv.store.compactionPending();
  }

  backgroundStep(): void {
    this.kv.store.compactStep();
  }

  /** The key-bucket records a compaction dropped that are not deleted yet (the simulator's digest). */
  compactionPendingRecords(): readonly Uint8Array[] {
    return this.kv.store.compactionPendingRecords();
  }

  restore(snapshot: Snapshot): void {
    assert(!this.lessor.isPrimary(), 'a leader does not install snapshots');
    const chunks = unpack(snapshot.data) as Uint8Array[];
    assert(Array.isArray(chunks), 'state snapshot is not a list of chunks');
    // The lease table is loaded from the restored backend before the store opens, since
    // opening re-attaches keys to the leases that exist (and rebuilds the key index: once).
    this.kv = KvStateMachine.restore(this.backend, chunks, this.kvOptions, () =>
      this.loadSideState([]),
    );
    this.current.attach(this.kv.store);
    this.watchHub.storeRestored();
    this.onPeersChanged?.();
  }

  // -------------------------------------------------------------------------------------------
  // Views for the server

  /** Raised alarms of one type, or all (AlarmType.None): the same on every member. */
  alarms(alarm: AlarmType = AlarmType.None): readonly AlarmMember[] {
    return this.alarmSet.list(alarm);
  }

  /** The replicated auth store, for the API edge's checks (read it, never change it). */
  auth(): AuthStore {
    return this.authStore;
  }

  members(): MemberInfo[] {
    return this.registry.list();
  }

  member(id: number): MemberRecord | undefined {
    return this.registry.get(id);
  }

  /** Every registered member, standbys outside the Raft configuration included (tandem's view). */
  allMembers(): MemberRecord[] {
    return this.registry.all();
  }

  range(req: RangeRequest): RangeResponse {
    return this.kv.range(req);
  }

  /** `range` in slices (KvStateMachine.rangeInSlices): for client Ranges on a large store. */
  rangeInSlices(req: RangeRequest, pause: () => Promise<void>): Promise<RangeResponse> {
    return this.kv.rangeInSlices(req, pause);
  }

  /** A read-only txn, read locally (KvStateMachine.readTxn). */
  readTxn(req: TxnRequest): TxnResponse {
    return this.kv.readTxn(req);
  }

  /** `readTxn` with its ranges in slices (KvStateMachine.readTxnInSlices): for client Txns. */
  readTxnInSlices(req: TxnRequest, pause: () => Promise<void>): Promise<TxnResponse> {
    return this.kv.readTxnInSlices(req, pause);
  }

  revision(): number {
    return this.kv.store.currentRevision();
  }

  compactRevision(): number {
    return this.kv.store.compactRevision();
  }

  hash(): KvHash {
    return this.kv.hash();
  }

  /** etcd's Hash: the whole backend, in slices (MvccStore.hashBackendInSlices). */
  hashBackendInSlices(
    pause: () => Promise<void>,
  ): Promise<{ readonly hash: number; readonly revision: number }> {
    return this.kv.store.hashBackendInSlices(pause);
  }

  /** `hash` in slices (KvStateMachine.hashInSlices): for the HashKV RPC on a large store. */
  hashInSlices(pause: () => Promise<void>, revision = 0): Promise<KvHash> {
    return this.kv.hashInSlices(pause, revision);
  }

  /** Validates and encodes a KV request for proposing (etcd's checks before the log). */
  encodeKv(req: KvRequest): Uint8Array {
    return encodeKvCommand(this.kv.encode(req));
  }

  // -------------------------------------------------------------------------------------------

  private applyNoopResult(ctx: ApplyContext): CommandResult {
    this.kv.store.write(ctx.index, () => {});
    return { kind: 'done' };
  }

  private applyLeaseGrant(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const [idText, ttlSeconds, leasesMax] = unpack(payload) as [string, number, unknown];
    const id = BigInt(idText);
    // Refusals are decided before the write: a throw inside a store write fails the store.
    const refusal = leaseGrantRefusal(
      this.lessor,
      id,
      ttlSeconds,
      typeof leasesMax === 'number' ? leasesMax : null,
    );
    if (refusal !== null) {
      this.applyNoopResult(ctx);
      return { kind: 'leaseRejected', error: refusal };
    }
    if (this.alarmSet.has(AlarmType.NoSpace)) {
      this.applyNoopResult(ctx);
      return { kind: 'rejected', error: new KvError('NO_SPACE') };
    }
    return this.kv.store.write(ctx.index, (txn) => {
      const grant = this.lessor.grant(id, ttlSeconds, this.nowMs());
      txn.putMeta(leaseKey(grant.id), pack([grant.ttlSeconds, 0]));
      if (id === 0n) txn.putMeta(META_LEASE_IDS, pack(this.lessor.toSnapshot().generatedIds));
      return { kind: 'leaseGranted', grant } as const;
    });
  }

  private applyLeaseRevoke(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const [idText] = unpack(payload) as [string];
    const id = BigInt(idText);
    if (!this.lessor.exists(id)) {
      this.applyNoopResult(ctx);
      return { kind: 'leaseRejected', error: new LeaseError(LeaseErrorCode.NotFound, id) };
    }
    return this.kv.store.write(ctx.index, (txn) => {
      const keys = this.lessor.revoke(id);
      for (const key of keys) txn.deleteRange(key, EMPTY);
      txn.deleteMeta(leaseKey(id));
      return {
        kind: 'leaseRevoked',
        id,
        revision: txn.rev() + (txn.changes() > 0 ? 1 : 0),
      } as const;
    });
  }

  private applyCheckpoints(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const rows = unpack(payload) as [string, number][];
    this.kv.store.write(ctx.index, (txn) => {
      for (const [idText, remainingTtlSeconds] of rows) {
        const id = BigInt(idText);
        if (!this.lessor.exists(id)) continue;
        this.lessor.applyCheckpoint({ id, remainingTtlSeconds }, this.nowMs());
        const ttl = this.lessor.timeToLive(id, this.nowMs(), false).grantedTtlSeconds;
        txn.putMeta(leaseKey(id), pack([ttl, remainingTtlSeconds]));
      }
    });
    return { kind: 'done' };
  }

  private applyAttributes(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const [id, name, clientUrls] = unpack(payload) as [number, string, string[]];
    this.kv.store.write(ctx.index, (txn) => {
      if (this.registry.updateAttributes(id, { name, clientUrls })) {
        txn.putMeta(META_REGISTRY, pack(this.registry.toSnapshot()));
      }
    });
    return { kind: 'done' };
  }

  private applyRegistryCommand(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    // Decided before the write (a throw inside a store write fails the store): a command that
    // does not decode or does not fit leaves the registry untouched on every member.
    let rejected: RegistryError | null = null;
    try {
      this.registry.applyCommand(decodeRegistryCommand(payload));
    } catch (error) {
      if (!(error instanceof RegistryError)) throw error;
      rejected = error;
    }
    if (rejected !== null) {
      this.applyNoopResult(ctx);
      return { kind: 'registryRejected', error: rejected };
    }
    this.kv.store.write(ctx.index, (txn) => {
      txn.putMeta(META_REGISTRY, pack(this.registry.toSnapshot()));
    });
    this.onPeersChanged?.();
    return { kind: 'done' };
  }

  private applyAlarm(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const change = decodeAlarmPayload(payload);
    if (change === null) return this.applyNoopResult(ctx);
    return this.kv.store.write(ctx.index, (txn) => {
      const set = this.alarmSet;
      const m =
        change.action === AlarmAction.Activate
          ? set.activate(change.memberId, change.alarm)
          : set.deactivate(change.memberId, change.alarm);
      txn.putMeta(META_ALARMS, set.encode());
      return { kind: 'alarm', alarms: m === null ? [] : [m] } as const;
    });
  }

  private authRejected(ctx: ApplyContext, error: AuthError): CommandResult {
    this.applyNoopResult(ctx);
    return { kind: 'authRejected', error };
  }

  private applyAuth(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const command = decodeAuthCommand(payload);
    if (command === null) return this.applyNoopResult(ctx);
    const store = this.authStore;
    if (command.kind === 'authenticate') {
      // etcd's authStore.Authenticate: the password was checked by the proposer.
      const user = store.user(command.name);
      if (!store.enabled) return this.authRejected(ctx, new AuthError('AUTH_NOT_ENABLED'));
      if (user === undefined || user.noPassword) {
        return this.authRejected(ctx, new AuthError('AUTH_FAILED'));
      }
      const token = `${command.tokenPrefix}.${ctx.index}`;
      this.simpleTokens.assign(token, command.name, this.nowMs());
      this.applyNoopResult(ctx);
      return { kind: 'authenticated', token };
    }
    // Decided before the write (a throw inside a store write fails the store); the store
    // throws only AuthErrors, before changing anything.
    const wasEnabled = store.enabled;
    let result: AuthOpResult;
    try {
      result = store.apply(command.op, command.header);
    } catch (error) {
      if (!(error instanceof AuthError)) throw error;
      return this.authRejected(ctx, error);
    }
    if (wasEnabled && !store.enabled) this.simpleTokens.clear(); // etcd's tokenProvider.disable
    if (!isAuthWrite(command.op)) {
      this.applyNoopResult(ctx);
      return { kind: 'auth', result };
    }
    this.kv.store.write(ctx.index, (txn) => {
      txn.putMeta(META_AUTH, store.encode());
    });
    return { kind: 'auth', result };
  }

  private applyAuthorized(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const headLength = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : -1;
    if (headLength < 0 || payload.length < 2 + headLength) return this.applyNoopResult(ctx);
    let head: unknown;
    try {
      head = unpack(payload.subarray(2, 2 + headLength));
    } catch {
      return this.applyNoopResult(ctx);
    }
    if (!Array.isArray(head) || typeof head[0] !== 'string' || typeof head[1] !== 'number') {
      return this.applyNoopResult(ctx);
    }
    const inner = payload.subarray(2 + headLength);
    if (inner[0] === CommandKind.Authorized) return this.applyNoopResult(ctx); // no nesting
    const store = this.authStore;
    if (store.enabled) {
      // The edge checked permissions under auth revision head[1]; they still hold if the store
      // has not changed since (etcd's isOpPermitted revision check, at apply).
      if (head[1] === 0) return this.authRejected(ctx, new AuthError('USER_EMPTY'));
      if (head[1] < store.revision)
        return this.authRejected(ctx, new AuthError('AUTH_OLD_REVISION'));
      if (inner[0] === CommandKind.Kv) {
        return this.kv.apply(ctx.index, inner.subarray(1), this.alarmSet.has(AlarmType.NoSpace));
      }
    }
    if (inner[0] === CommandKind.Deduped) return this.applyDeduped(ctx, inner.subarray(1), head[0]);
    return this.apply(ctx, inner);
  }

  /** Kind 11: a kv command applied once per (user, request id) within the window. */
  private applyDeduped(ctx: ApplyContext, payload: Uint8Array, user: string): CommandResult {
    const deduped = decodeDedupedPayload(payload);
    if (deduped === null || deduped.command[0] !== CommandKind.Kv) {
      return this.applyNoopResult(ctx); // not one (a corrupt entry): the same on every member
    }
    const capped = this.alarmSet.has(AlarmType.NoSpace);
    return this.dedupe.applyOnce(
      ctx.index,
      user,
      deduped,
      (record) => this.kv.applyRecorded(ctx.index, deduped.command.subarray(1), capped, record),
      () => this.applyNoopResult(ctx),
    );
  }

  private applyPeerUrls(ctx: ApplyContext, payload: Uint8Array): CommandResult {
    const [id, peerUrls] = unpack(payload) as [number, string[]];
    this.kv.store.write(ctx.index, (txn) => {
      if (this.registry.updateAttributes(id, { peerUrls })) {
        txn.putMeta(META_REGISTRY, pack(this.registry.toSnapshot()));
      }
    });
    this.onPeersChanged?.();
    return { kind: 'done' };
  }
}

function leaseGrantRefusal(
  lessor: Lessor,
  id: LeaseId,
  ttlSeconds: number,
  leasesMax: number | null,
): LeaseError | null {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0 || ttlSeconds > LEASE_TTL_SECONDS_MAX) {
    return new LeaseError(LeaseErrorCode.TtlTooLarge, id);
  }
  if (leasesMax !== null && lessor.size >= leasesMax) {
    const detail = `${lessor.size} alive, limits.leasesMax is ${leasesMax}; revoke some or raise it`;
    return new LeaseError(LeaseErrorCode.TooMany, id === 0n ? null : id, detail);
  }
  if (id === 0n) return null;
  if (id < 0n || id > LEASE_ID_MAX) return new LeaseError(LeaseErrorCode.IdOutOfRange, id);
  if (lessor.exists(id)) return new LeaseError(LeaseErrorCode.Exists, id);
  return null;
}

function withKind(kind: CommandKind, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + payload.length);
  out[0] = kind;
  out.set(payload, 1);
  return out;
}

/** The member loop over this state machine: proposals resolve with a CommandResult. */
export type TandemMember = Member<CommandResult>;
