/**
 * TEST HARNESS, not production code: an EtcdBackend for one member with no raft, built on the
 * real kv layer (KvStateMachine over MemoryBackend, the Lessor, the WatchHub). Every write is
 * encoded and applied at the next index at once, as a single-voter member would after commit,
 * so the API edge meets the real MVCC semantics, validation and errors.
 */

import { type ApiServer, startApiServer } from '../../src/api/server.js';
import type {
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KvRequest,
  KvResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../../src/kv/api-types.js';
import { deleteRangeRequest, op, txnRequest } from '../../src/kv/api-types.js';
import { type AuthOp, AuthStore, NO_CREDENTIALS, PermType } from '../../src/kv/auth/index.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { LeaseError, LeaseErrorCode } from '../../src/kv/lease/errors.js';
import { Lessor } from '../../src/kv/lease/lessor.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import type { LeaseId } from '../../src/kv/types.js';
import { WatchHub } from '../../src/kv/watch/hub.js';
import type { WatchStream } from '../../src/kv/watch/stream.js';
import { type AlarmMember, AlarmSet, isAlarmType } from '../../src/server/alarms.js';
import type {
  AlarmOp,
  AuthBackend,
  EtcdBackend,
  Header,
  LeaseGrantResult,
  LeaseTimeToLiveResult,
  Member,
  MemberStatus,
  SnapshotStream,
  WithHeader,
} from '../../src/server/contract.js';
import { ServerError } from '../../src/server/errors.js';

export const CLUSTER_ID = 0xdeadbeefcafe1234n;
/** Above 2^63: uint64 member ids must round-trip exactly. */
export const MEMBER_ID = 0xf00dbabe12345678n;
const TICK_MS = 20;

export class TestBackend implements EtcdBackend {
  readonly lessor = new Lessor({ minTtlSeconds: 1 });
  readonly sm = KvStateMachine.open(new MemoryBackend(), { lessor: this.lessor });
  readonly hub = new WatchHub(this.sm.store);
  private index = 0;
  private nextMemberId = 1n;
  private members: Member[] = [
    {
      id: MEMBER_ID,
      name: 'n1',
      peerUrls: ['http://127.0.0.1:2380'],
      clientUrls: ['http://127.0.0.1:2379'],
      isLearner: false,
    },
  ];
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.lessor.promote(Date.now(), 0);
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  close(): void {
    clearInterval(this.timer);
    this.hub.close();
  }

  header(): Header {
    return {
      clusterId: CLUSTER_ID,
      memberId: MEMBER_ID,
      revision: this.sm.store.currentRevision(),
      raftTerm: 2,
    };
  }

  private tick(): void {
    const now = Date.now();
    for (const id of this.lessor.expired(now)) this.revoke(id);
    this.hub.tick(now);
  }

  private apply(req: KvRequest): KvResponse {
    const command = this.sm.encode(req);
    this.index += 1;
    const result = this.sm.apply(this.index, command);
    if (result.kind === 'rejected') throw result.error;
    if (result.kind === 'skipped') throw new Error('harness: entry skipped');
    return result.response;
  }

  private with<T>(response: T): WithHeader<T> {
    return { header: this.header(), response };
  }

  async range(req: RangeRequest): Promise<WithHeader<RangeResponse>> {
    // As the member's facade: a slice per event-loop turn.
    const pause = () => new Promise<void>((resolve) => setImmediate(resolve));
    return this.with(await this.sm.rangeInSlices(req, pause));
  }

  async put(req: PutRequest): Promise<WithHeader<PutResponse>> {
    const res = this.apply({ type: 'put', request: req });
    if (res.type !== 'put') throw new Error('harness: wrong response');
    return this.with(res.response);
  }

  async deleteRange(req: DeleteRangeRequest): Promise<WithHeader<DeleteRangeResponse>> {
    const res = this.apply({ type: 'deleteRange', request: req });
    if (res.type !== 'deleteRange') throw new Error('harness: wrong response');
    return this.with(res.response);
  }

  async txn(req: TxnRequest): Promise<WithHeader<TxnResponse>> {
    const res = this.apply({ type: 'txn', request: req });
    if (res.type !== 'txn') throw new Error('harness: wrong response');
    return this.with(res.response);
  }

  async compact(req: CompactionRequest): Promise<WithHeader<CompactionResponse>> {
    const res = this.apply({ type: 'compaction', request: req });
    if (res.type !== 'compaction') throw new Error('harness: wrong response');
    return this.with(res.response);
  }

  openWatchStream(onReadable: () => void): WatchStream {
    return this.hub.openStream(onReadable);
  }

  async leaseGrant(id: LeaseId, ttlSeconds: number): Promise<LeaseGrantResult> {
    const granted = this.lessor.grant(id, ttlSeconds, Date.now());
    return { id: granted.id, ttlSeconds: granted.ttlSeconds };
  }

  async leaseRevoke(id: LeaseId): Promise<void> {
    if (!this.lessor.exists(id)) throw new LeaseError(LeaseErrorCode.NotFound, id);
    this.revoke(id);
  }

  /** Revoke and delete the lease's keys in one revision, as the member's apply must. */
  private revoke(id: LeaseId): void {
    const keys = this.lessor.revoke(id);
    if (keys.length === 0) return;
    const deletes = keys.map((key) => op.deleteRange(deleteRangeRequest({ key })));
    this.apply({ type: 'txn', request: txnRequest({ success: deletes }) });
  }

  async leaseKeepAlive(id: LeaseId): Promise<number> {
    return this.lessor.keepAlive(id, Date.now()).ttlSeconds;
  }

  async leaseTimeToLive(id: LeaseId, withKeys: boolean): Promise<LeaseTimeToLiveResult> {
    if (!this.lessor.exists(id)) return { id, ttlSeconds: -1, grantedTtlSeconds: 0, keys: [] };
    const ttl = this.lessor.timeToLive(id, Date.now(), withKeys);
    return {
      id,
      ttlSeconds: ttl.remainingTtlSeconds,
      grantedTtlSeconds: ttl.grantedTtlSeconds,
      keys: ttl.keys,
    };
  }

  async leaseLeases(): Promise<readonly LeaseId[]> {
    return this.lessor.leases();
  }

  async memberList(): Promise<readonly Member[]> {
    return this.members;
  }

  async memberAdd(peerUrls: readonly string[], isLearner: boolean) {
    if (this.members.some((m) => m.peerUrls.some((u) => peerUrls.includes(u)))) {
      throw new ServerError('PEER_URL_EXISTS', 'peer URL exists');
    }
    const member: Member = {
      id: this.nextMemberId++,
      name: '',
      peerUrls,
      clientUrls: [],
      isLearner,
    };
    this.members = [...this.members, member];
    return { member, members: this.members };
  }

  private find(id: bigint): Member {
    const member = this.members.find((m) => m.id === id);
    if (member === undefined) throw new ServerError('MEMBER_NOT_FOUND', 'member not found');
    return member;
  }

  async memberRemove(id: bigint): Promise<readonly Member[]> {
    this.find(id);
    this.members = this.members.filter((m) => m.id !== id);
    return this.members;
  }

  async memberUpdate(id: bigint, peerUrls: readonly string[]): Promise<readonly Member[]> {
    const member = this.find(id);
    this.members = this.members.map((m) => (m === member ? { ...m, peerUrls } : m));
    return this.members;
  }

  async memberPromote(id: bigint): Promise<readonly Member[]> {
    const member = this.find(id);
    if (!member.isLearner) throw new ServerError('NOT_LEARNER', 'not a learner');
    this.members = this.members.map((m) => (m === member ? { ...m, isLearner: false } : m));
    return this.members;
  }

  async status(): Promise<MemberStatus> {
    return {
      version: '3.5.0',
      dbSize: 4096,
      dbSizeInUse: 2048,
      leader: MEMBER_ID,
      raftIndex: this.index,
      raftTerm: 2,
      raftAppliedIndex: this.sm.appliedIndex(),
      isLearner: false,
      errors: [],
    };
  }

  async hashKv(revision: number) {
    const h = this.sm.hash(revision);
    return { hash: h.hash, compactRevision: h.compactRevision, hashRevision: h.revision };
  }

  async hash() {
    return this.sm.store.hashBackendInSlices(() => Promise.resolve());
  }

  /** The alarms, applied at once as a single member would (no log). */
  readonly alarms = new AlarmSet();
  async alarm(op: AlarmOp, memberId: bigint, alarm: number): Promise<readonly AlarmMember[]> {
    if (!isAlarmType(alarm)) throw new Error(`harness: alarm type ${alarm}`);
    if (op === 'get') return this.alarms.list(alarm);
    const m =
      op === 'activate'
        ? this.alarms.activate(memberId, alarm)
        : this.alarms.deactivate(memberId, alarm);
    return m === null ? [] : [m];
  }

  defragments = 0;
  async defragment(): Promise<void> {
    this.defragments += 1;
  }

  /** Tests set it false to see `hasleader` metadata refused. */
  leader = true;
  hasLeader(): boolean {
    return this.leader;
  }

  readonly leaderLostListeners = new Set<() => void>();
  onLeaderLost(listener: () => void): () => void {
    this.leaderLostListeners.add(listener);
    return () => this.leaderLostListeners.delete(listener);
  }

  /** As the member after monitorLeader's span without a leader. */
  loseLeader(): void {
    this.leader = false;
    const listeners = [...this.leaderLostListeners];
    this.leaderLostListeners.clear();
    for (const listener of listeners) listener();
  }

  async moveLeader(targetId: bigint): Promise<void> {
    if (targetId !== MEMBER_ID) throw new ServerError('BAD_LEADER_TRANSFEREE', 'not a voter');
  }

  async snapshot(): Promise<SnapshotStream> {
    const snap = this.sm.snapshot();
    return { header: this.header(), sizeBytes: null, chunks: snap.chunks };
  }
}

export interface Harness {
  readonly backend: TestBackend;
  readonly server: ApiServer;
  readonly endpoint: string;
  close(): Promise<void>;
}

/** Logs nothing unless TANDEM_TEST_LOG is set; errors are kept for assertions. */
export function testLogger() {
  const errors: unknown[] = [];
  const verbose = process.env.TANDEM_TEST_LOG !== undefined;
  const log =
    (level: string) =>
    (obj: object, msg?: string): void => {
      if (level === 'error') errors.push(obj);
      if (verbose) process.stderr.write(`${level} ${msg ?? ''} ${JSON.stringify(obj)}\n`);
    };
  return {
    errors,
    logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
  };
}

export async function startHarness(): Promise<Harness & { errors: unknown[] }> {
  const backend = new TestBackend();
  const { logger, errors } = testLogger();
  const server = await startApiServer({ backend, listen: '127.0.0.1:0', logger });
  return {
    backend,
    server,
    errors,
    endpoint: `127.0.0.1:${server.port}`,
    close: async () => {
      await server.close();
      backend.close();
    },
  };
}

const enc = new TextEncoder();

/**
 * The test backend with a real, enabled auth store: alice may read and write a/…, nothing else;
 * root and every name in `rootUsers` (e.g. a forwarding member's certificate name) may do all.
 */
export class AuthTestBackend extends TestBackend {
  readonly store = new AuthStore();
  readonly auth: AuthBackend = {
    store: () => this.store,
    propose: () => Promise.reject(new Error('not in this test')),
    authenticate: () => Promise.reject(new Error('not in this test')),
    barrier: () => Promise.resolve(),
    simpleTokenUser: () => Promise.resolve(null),
    leaseKeys: () => [],
  };

  constructor(rootUsers: readonly string[] = []) {
    super();
    const ops: AuthOp[] = [
      { op: 'userAdd', name: 'root', passwordHash: '', noPassword: true },
      { op: 'userGrantRole', user: 'root', role: 'root' },
      { op: 'userAdd', name: 'alice', passwordHash: '', noPassword: true },
      { op: 'roleAdd', name: 'a-writer' },
      {
        op: 'roleGrantPermission',
        name: 'a-writer',
        perm: { permType: PermType.ReadWrite, key: enc.encode('a/'), rangeEnd: enc.encode('a0') },
      },
      { op: 'userGrantRole', user: 'alice', role: 'a-writer' },
      ...rootUsers.flatMap((name): AuthOp[] => [
        { op: 'userAdd', name, passwordHash: '', noPassword: true },
        { op: 'userGrantRole', user: name, role: 'root' },
      ]),
      { op: 'authEnable' },
    ];
    for (const op of ops) this.store.apply(op, NO_CREDENTIALS);
  }
}
