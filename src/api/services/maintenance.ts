/**
 * etcd's Maintenance service: alarms (replicated, src/server/alarms.ts), status, defragment,
 * Hash (the whole backend) and HashKV (the key history up to a revision), snapshot, move-leader.
 */
import { createHash } from 'node:crypto';
import type { AlarmOp, SnapshotStream } from '../../server/contract.js';
import {
  checkAdmin,
  plainOptions,
  type ServiceContext,
  statusFor,
  unary,
  withAdminCheck,
  withLeaderCheck,
} from '../context.js';
import { headerToPb, int64Out, memberIdField, uintField } from '../convert.js';
import { ApiError } from '../errors.js';
import {
  type ServerStreamingCall,
  type ServiceHandlers,
  serverStreamHandler,
} from '../grpc/handlers.js';
import { SNAPSHOT_ALIGN_BYTES, SNAPSHOT_CHUNK_BYTES_MAX } from '../limits.js';
import {
  PB_ENUMS,
  type PbAlarmRequest,
  type PbHashKvRequest,
  type PbMoveLeaderRequest,
  type PbResponseHeader,
} from '../proto.js';

/** The longest the snapshot stream keeps the event loop between two turns it gives away. */
const SNAPSHOT_EVENT_LOOP_SLICE_MS = 10;
/** AlarmType's largest value (CORRUPT). */
const ALARM_TYPE_MAX = 2;
const ALARM_OPS: ReadonlyMap<number, AlarmOp> = new Map([
  [PB_ENUMS.alarmActionGet, 'get'],
  [PB_ENUMS.alarmActionActivate, 'activate'],
  [PB_ENUMS.alarmActionDeactivate, 'deactivate'],
]);

/** What etcd 3.4 reserves for root (authMaintenanceServer); Snapshot is checked in its stream. */
const ADMIN_METHODS = ['Defragment', 'Hash', 'HashKV'];

export function maintenanceService(ctx: ServiceContext): ServiceHandlers {
  const { backend } = ctx;
  const header = () => headerToPb(backend.header());
  const handlers = withLeaderCheck(ctx, {
    Alarm: unary(async (pb: PbAlarmRequest, call) => {
      memberIdField(pb.memberID, 'AlarmRequest.memberID');
      if (pb.alarm < 0 || pb.alarm > ALARM_TYPE_MAX) {
        throw new ApiError('INVALID_FIELD', `AlarmRequest.alarm has an unknown value: ${pb.alarm}`);
      }
      const op = ALARM_OPS.get(pb.action);
      if (op === undefined) {
        throw new ApiError(
          'INVALID_FIELD',
          `AlarmRequest.action has an unknown value: ${pb.action}`,
        );
      }
      const memberId = BigInt(pb.memberID);
      const alarms = await backend.alarm(op, memberId, pb.alarm, plainOptions(ctx, call));
      return {
        header: header(),
        alarms: alarms.map((m) => ({ memberID: int64Out(m.memberId), alarm: m.alarm })),
      };
    }),

    Status: unary(async () => {
      const s = await backend.status();
      return {
        header: header(),
        version: s.version,
        dbSize: s.dbSize,
        leader: int64Out(s.leader),
        raftIndex: s.raftIndex,
        raftTerm: s.raftTerm,
        raftAppliedIndex: s.raftAppliedIndex,
        errors: s.errors,
        dbSizeInUse: s.dbSizeInUse,
        isLearner: s.isLearner,
      };
    }),

    Defragment: unary(async () => {
      await backend.defragment();
      return { header: header() };
    }),

    // etcd marks Hash "for testing ONLY"; HashKV is the consistency check clients use.
    Hash: unary(async () => {
      const h = await backend.hash();
      return { header: { ...header(), revision: h.revision }, hash: h.hash };
    }),

    HashKV: unary(async (pb: PbHashKvRequest) => {
      const revision = uintField(pb.revision, 'HashKVRequest.revision');
      const h = await backend.hashKv(revision);
      return {
        header: header(),
        hash: h.hash,
        compactRevision: h.compactRevision,
        hashRevision: h.hashRevision,
      };
    }),

    Snapshot: serverStreamHandler((call: SnapshotCall) => {
      void sendSnapshot(ctx, call);
    }),

    MoveLeader: unary(async (pb: PbMoveLeaderRequest, call) => {
      const target = memberIdField(pb.targetID, 'MoveLeaderRequest.targetID');
      await backend.moveLeader(target, plainOptions(ctx, call));
      return { header: header() };
    }),

    Downgrade: unary(async () => {
      throw new ApiError('NOT_SUPPORTED', 'Maintenance.Downgrade');
    }),
  });
  return withAdminCheck(ctx, handlers, ADMIN_METHODS, 'raw');
}

type SnapshotCall = ServerStreamingCall<unknown, unknown>;

/**
 * etcd's Snapshot: the bytes (an etcd bbolt file) in messages of at most 32 KiB with
 * remaining_bytes counting down, then one message holding the SHA-256 of all of them
 * (etcdctl snapshot save and restore check both).
 * The first message carries the header of the snapshot's point in time. Each write waits for
 * the gRPC buffer to drain when it is full; a client that goes away stops the read.
 */
async function sendSnapshot(ctx: ServiceContext, call: SnapshotCall): Promise<void> {
  const signal = call.signal;
  let iterator: Iterator<Uint8Array> | AsyncIterator<Uint8Array> | null = null;
  try {
    if (ctx.auth.enabled()) await checkAdmin(ctx, call, 'raw');
    const snapshot = await ctx.backend.snapshot();
    iterator = chunkIterator(snapshot);
    const hash = createHash('sha256');
    let first: PbResponseHeader | null = headerToPb(snapshot.header);
    let sent = 0;
    let pausedAtMs = performance.now();
    let next = await iterator.next();
    while (!next.done) {
      const chunk = next.value;
      // Producing chunks is synchronous work (encoding pages): give the event loop a turn now
      // and then, whether or not the gRPC buffer was full.
      if (performance.now() - pausedAtMs > SNAPSHOT_EVENT_LOOP_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        pausedAtMs = performance.now();
        if (signal.aborted) return;
      }
      // Read one chunk ahead so that remaining_bytes reaches 0 on the last data message even
      // when the total size is not known up front.
      const following = await iterator.next();
      const ahead = following.done ? 0 : following.value.byteLength;
      hash.update(chunk);
      for (let offset = 0; offset < chunk.byteLength; offset += SNAPSHOT_CHUNK_BYTES_MAX) {
        const blob = chunk.subarray(offset, offset + SNAPSHOT_CHUNK_BYTES_MAX);
        sent += blob.byteLength;
        const remaining =
          snapshot.sizeBytes === null
            ? chunk.byteLength - offset - blob.byteLength + ahead
            : snapshot.sizeBytes - sent;
        await write(call, signal, { header: first, remainingBytes: Math.max(0, remaining), blob });
        first = null;
        if (signal.aborted) return;
      }
      next = following;
    }
    // etcdctl (3.4+) refuses a snapshot whose size is not n * 512 + 32 ("sha256 checksum not
    // found"). A bbolt file is page-aligned already; the padding is for any other producer.
    const padding = (SNAPSHOT_ALIGN_BYTES - (sent % SNAPSHOT_ALIGN_BYTES)) % SNAPSHOT_ALIGN_BYTES;
    if (padding > 0) {
      const zeros = new Uint8Array(padding);
      hash.update(zeros);
      await write(call, signal, { header: first, remainingBytes: 0, blob: zeros });
      first = null;
      if (signal.aborted) return;
    }
    await write(call, signal, { header: first, remainingBytes: 0, blob: hash.digest() });
    call.end();
    iterator = null;
  } catch (err) {
    if (!signal.aborted) call.fail(statusFor(ctx, 'Snapshot', err));
  } finally {
    // An early exit releases the member's point-in-time view.
    await iterator?.return?.();
  }
}

function chunkIterator(snapshot: SnapshotStream): Iterator<Uint8Array> | AsyncIterator<Uint8Array> {
  const chunks = snapshot.chunks;
  return Symbol.asyncIterator in chunks
    ? chunks[Symbol.asyncIterator]()
    : (chunks as Iterable<Uint8Array>)[Symbol.iterator]();
}

function write(call: SnapshotCall, signal: AbortSignal, message: object): Promise<void> {
  if (call.write(message) || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
