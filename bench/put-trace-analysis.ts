/**
 * Where a put's latency goes, from the members' entry traces (src/cli/entry-trace.ts) and the
 * client's send and receive times: each put is matched to its log entry (the serving member's
 * `applied` mark of its own proposal inside the put's window), then timed stage by stage across
 * the members. Pure: bench/put-trace.ts runs the cluster and prints what this returns.
 */
import type { TraceMark } from '../src/cli/entry-trace.js';

/** One put as the client saw it: which member served it, when it was sent and answered (µs). */
export interface ClientPut {
  readonly member: number;
  readonly sentUs: number;
  readonly doneUs: number;
}

/**
 * When each entry index reached a stage, every time it did: an index is appended again when a
 * new leader overwrites an uncommitted suffix, so a put's look-ups take the first time at or
 * after a point of its own path (its send, its append), never the index's first time ever.
 */
export class IndexTimes {
  private readonly times = new Map<number, number[]>();

  /** Records `us` for indexes `first..last`; calls come in time order. */
  add(first: number, last: number, us: number): void {
    for (let i = first; i <= last; i++) {
      const list = this.times.get(i);
      if (list === undefined) this.times.set(i, [us]);
      else list.push(us);
    }
  }

  /** The first time `index` reached this stage at or after `afterUs`. */
  at(index: number, afterUs: number): number | undefined {
    return this.times.get(index)?.find((us) => us >= afterUs);
  }
}

/** One member's marks, indexed for look-ups by entry index. */
export class MemberMarks {
  readonly append = new IndexTimes();
  readonly durable = new IndexTimes();
  readonly commit = new IndexTimes();
  readonly applied = new IndexTimes();
  /** Entries this member proposed, as applied, in time order. */
  readonly ownApplied: { index: number; us: number; bytes: number }[] = [];
  /** Appends stepped, by the leader that sent them. */
  readonly recvApp = new Map<number, IndexTimes>();
  /** In time order. */
  readonly recvAck: TraceMark[] = [];
  readonly recvCommit: TraceMark[] = [];
  /** Forwarded proposals stepped, in time order (`c` is the follower that forwarded them). */
  readonly recvProp: TraceMark[] = [];
  /** KV Put calls, in the order they answered: `a` is the call's start, `us` its answer. */
  readonly rpc: TraceMark[] = [];

  constructor(marks: readonly TraceMark[]) {
    const sorted = [...marks].sort((x, y) => x.us - y.us);
    for (const m of sorted) {
      switch (m.stage) {
        case 'append':
          this.append.add(m.a, m.b, m.us);
          break;
        case 'durable':
          this.durable.add(m.a, m.b, m.us);
          break;
        case 'commit':
          this.commit.add(m.a, m.b, m.us);
          break;
        case 'applied':
          this.applied.add(m.a, m.a, m.us);
          if (m.b > 0) this.ownApplied.push({ index: m.a, us: m.us, bytes: m.c });
          break;
        case 'recv-app': {
          const byIndex = this.recvApp.get(m.c) ?? new IndexTimes();
          this.recvApp.set(m.c, byIndex);
          byIndex.add(m.a, m.b, m.us);
          break;
        }
        case 'recv-ack':
          this.recvAck.push(m);
          break;
        case 'recv-commit':
          this.recvCommit.push(m);
          break;
        case 'recv-prop':
          this.recvProp.push(m);
          break;
        case 'rpc':
          this.rpc.push(m);
          break;
      }
    }
  }

  /** The first acknowledgement from `from` covering `index`, at or after `afterUs`. */
  ackFrom(from: number, index: number, afterUs: number): number | undefined {
    const list = this.recvAck;
    for (let i = firstAtOrAfter(list, afterUs); i < list.length; i++) {
      if (list[i]!.c === from && list[i]!.a >= index) return list[i]!.us;
    }
    return undefined;
  }

  /** The first commit index ≥ `index` heard from a leader, at or after `afterUs`. */
  commitHeard(index: number, afterUs: number): number | undefined {
    const list = this.recvCommit;
    for (let i = firstAtOrAfter(list, afterUs); i < list.length; i++) {
      if (list[i]!.a >= index) return list[i]!.us;
    }
    return undefined;
  }
}

/** The position of the first mark at or after `us` in a time-ordered list (binary search). */
function firstAtOrAfter(list: readonly { readonly us: number }[], us: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.us < us) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The stages of one put, µs between named points (absent when the path did not take them). */
export type PutStages = Map<string, number>;

export interface PutTraceResult {
  /** Stage name → durations (µs) over the puts that took it, in the order stages first appeared. */
  readonly stages: Map<string, number[]>;
  readonly matched: number;
  readonly unmatched: number;
  /** Puts whose commit waited for the leader's own write (else a follower's acknowledgement). */
  readonly leaderWriteLast: number;
}

/** Entries of at least this many bytes are client puts (internal proposals are smaller). */
export interface AnalyzeOptions {
  readonly leader: number;
  readonly minEntryBytes: number;
}

/** Times one put across the members; null when some mark is missing (say, a dropped one). */
export function putStages(
  put: ClientPut,
  members: ReadonlyMap<number, MemberMarks>,
  options: AnalyzeOptions,
): { stages: PutStages; leaderWriteLast: boolean } | null {
  const serving = members.get(put.member);
  const leader = members.get(options.leader);
  if (serving === undefined || leader === undefined) return null;
  const own: { index: number }[] = [];
  const list = serving.ownApplied;
  for (
    let i = firstAtOrAfter(list, put.sentUs);
    i < list.length && list[i]!.us <= put.doneUs;
    i++
  ) {
    if (list[i]!.bytes >= options.minEntryBytes) own.push(list[i]!);
  }
  if (own.length !== 1) return null;
  const index = own[0]!.index;
  const call = serving.rpc[firstAtOrAfter(serving.rpc, put.sentUs)];
  if (call === undefined || call.us > put.doneUs || call.a < put.sentUs) return null;
  const stages: PutStages = new Map();
  stages.set('client sends → the call starts', call.a - put.sentUs);
  const appendUs = leader.append.at(index, call.a);
  if (appendUs === undefined) return null;
  const leaderDurableUs = leader.durable.at(index, appendUs);
  const commitUs = leader.commit.at(index, appendUs);
  if (leaderDurableUs === undefined || commitUs === undefined) return null;
  if (put.member === options.leader) {
    stages.set('the call starts → leader appends', appendUs - call.a);
  } else {
    // The serving follower's forward: the first from it after the call started.
    let propUs: number | undefined;
    const props = leader.recvProp;
    for (let i = firstAtOrAfter(props, call.a); i < props.length && props[i]!.us <= appendUs; i++) {
      if (props[i]!.c === put.member) {
        propUs = props[i]!.us;
        break;
      }
    }
    if (propUs === undefined) return null;
    stages.set('the call starts → leader steps the proposal', propUs - call.a);
    stages.set('leader steps the proposal → appends', appendUs - propUs);
  }
  // The follower whose acknowledgement came first: with the leader's own write, a quorum of 3.
  let quorumFollower: number | null = null;
  let firstAckUs = members.size === 1 ? leaderDurableUs : Number.POSITIVE_INFINITY;
  for (const id of members.keys()) {
    if (id === options.leader) continue;
    const ackUs = leader.ackFrom(id, index, appendUs);
    if (ackUs !== undefined && ackUs < firstAckUs) {
      firstAckUs = ackUs;
      quorumFollower = id;
    }
  }
  if (quorumFollower !== null) {
    const f = members.get(quorumFollower)!;
    const recvUs = f.recvApp.get(options.leader)?.at(index, appendUs);
    if (recvUs === undefined) return null;
    const fAppendUs = f.append.at(index, recvUs);
    const fDurableUs = fAppendUs === undefined ? undefined : f.durable.at(index, fAppendUs);
    if (fAppendUs === undefined || fDurableUs === undefined) return null;
    stages.set('leader appends → follower steps the append', recvUs - appendUs);
    stages.set('follower steps → takes the Ready', fAppendUs - recvUs);
    stages.set('follower write (fdatasync)', fDurableUs - fAppendUs);
    stages.set('follower durable → leader steps the ack', firstAckUs - fDurableUs);
  } else if (members.size > 1) {
    return null;
  }
  stages.set('leader write (fdatasync)', leaderDurableUs - appendUs);
  const quorumUs = Math.max(leaderDurableUs, firstAckUs);
  stages.set('quorum durable → leader takes the commit Ready', commitUs - quorumUs);
  if (put.member === options.leader) {
    const appliedUs = leader.applied.at(index, commitUs);
    if (appliedUs === undefined) return null;
    stages.set('leader commit Ready → applied', appliedUs - commitUs);
    stages.set('applied → the call answers', call.us - appliedUs);
  } else {
    const heardUs = serving.commitHeard(index, commitUs);
    const sCommitUs = heardUs === undefined ? undefined : serving.commit.at(index, heardUs);
    const sAppliedUs = sCommitUs === undefined ? undefined : serving.applied.at(index, sCommitUs);
    if (heardUs === undefined || sCommitUs === undefined || sAppliedUs === undefined) return null;
    stages.set('leader commit Ready → follower steps the commit', heardUs - commitUs);
    stages.set('follower steps the commit → takes the Ready', sCommitUs - heardUs);
    stages.set('follower commit Ready → applied', sAppliedUs - sCommitUs);
    stages.set('applied → the call answers', call.us - sAppliedUs);
  }
  stages.set('the call answers → client has the reply', put.doneUs - call.us);
  stages.set('total', put.doneUs - put.sentUs);
  return { stages, leaderWriteLast: leaderDurableUs >= firstAckUs };
}

export function analyzePuts(
  puts: readonly ClientPut[],
  members: ReadonlyMap<number, MemberMarks>,
  options: AnalyzeOptions,
): PutTraceResult {
  const stages = new Map<string, number[]>();
  let matched = 0;
  let leaderWriteLast = 0;
  for (const put of puts) {
    const r = putStages(put, members, options);
    if (r === null) continue;
    matched++;
    if (r.leaderWriteLast) leaderWriteLast++;
    for (const [name, us] of r.stages) {
      const list = stages.get(name) ?? [];
      stages.set(name, list);
      list.push(us);
    }
  }
  return { stages, matched, unmatched: puts.length - matched, leaderWriteLast };
}

/** The q-quantile (0..1) of `values` by nearest rank; NaN for none. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
