/**
 * limits.leasesMax: a LeaseGrant past the limit its proposer carried in the entry is refused at
 * apply with RESOURCE_EXHAUSTED, identically on every member whatever their own config, and
 * grants from entries written before the limit existed (no limit in them) replay as before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pack } from 'msgpackr';
import { toWireStatus } from '../../src/api/errors.js';
import { Status } from '../../src/api/grpc/status.js';
import { MemoryBackend } from '../../src/kv/backend/memory.js';
import { LeaseError } from '../../src/kv/lease/errors.js';
import {
  type CommandResult,
  encodeLeaseGrant,
  encodeLeaseRevoke,
  TandemStateMachine,
} from '../../src/server/tandem-state-machine.js';

const founders = [{ id: 1, name: 'n1', peerUrls: ['127.0.0.1:2380'], clientUrls: [] }];

function machine() {
  return new TandemStateMachine({ backend: new MemoryBackend(), founders, nowMs: () => 0 });
}

function rejection(result: CommandResult): LeaseError {
  assert.equal(result.kind, 'leaseRejected', `expected a refusal, got ${result.kind}`);
  const error = (result as { error: unknown }).error;
  assert.ok(error instanceof LeaseError);
  return error;
}

test('past leasesMax a grant is refused with RESOURCE_EXHAUSTED naming the limit', () => {
  const sm = machine();
  let index = 1;
  for (const id of [1n, 2n, 3n]) {
    assert.equal(
      sm.apply({ index: ++index, term: 1 }, encodeLeaseGrant(id, 60, 3)).kind,
      'leaseGranted',
    );
  }
  const error = rejection(sm.apply({ index: ++index, term: 1 }, encodeLeaseGrant(4n, 60, 3)));
  assert.equal(error.code, 'LEASE_TOO_MANY');
  assert.equal(
    error.message,
    'tandem: too many leases (3 alive, limits.leasesMax is 3; revoke some or raise it)',
  );
  const wire = toWireStatus(error);
  assert.equal(wire.code, Status.RESOURCE_EXHAUSTED);
  assert.match(wire.details, /limits\.leasesMax is 3/);
  assert.equal(sm.lessor.size, 3, 'the refused grant made no lease');
  assert.equal(sm.appliedIndex(), index, 'the refusal still consumes its index');
  // An id of 0 (the member picks one) is refused the same way.
  rejection(sm.apply({ index: ++index, term: 1 }, encodeLeaseGrant(0n, 60, 3)));
  // A revoke makes room again.
  assert.equal(sm.apply({ index: ++index, term: 1 }, encodeLeaseRevoke(2n)).kind, 'leaseRevoked');
  assert.equal(
    sm.apply({ index: ++index, term: 1 }, encodeLeaseGrant(5n, 60, 3)).kind,
    'leaseGranted',
  );
});

test('every member decides by the limit in the entry, not by its own config', () => {
  // The same log on two members: the entries carry the proposers' limits (2, then 10).
  const log = [
    encodeLeaseGrant(1n, 60, 2),
    encodeLeaseGrant(2n, 60, 2),
    encodeLeaseGrant(3n, 60, 2), // refused: two alive, its proposer allowed two
    encodeLeaseGrant(4n, 60, 10), // another proposer with a larger limit: granted
  ];
  const kinds = [machine(), machine()].map((sm) =>
    log.map((entry, i) => sm.apply({ index: i + 2, term: 1 }, entry).kind),
  );
  assert.deepEqual(kinds[0], ['leaseGranted', 'leaseGranted', 'leaseRejected', 'leaseGranted']);
  assert.deepEqual(kinds[1], kinds[0]);
});

test('a grant entry written before the limit existed has none', () => {
  const sm = machine();
  // The old encoding: [id, ttl], no limit.
  const old = (id: bigint) => {
    const payload = pack([id.toString(), 60]) as Uint8Array;
    const out = new Uint8Array(1 + payload.length);
    out[0] = encodeLeaseGrant(1n, 1)[0]!;
    out.set(payload, 1);
    return out;
  };
  for (let i = 0; i < 5; i++) {
    assert.equal(sm.apply({ index: i + 2, term: 1 }, old(BigInt(i + 1))).kind, 'leaseGranted');
  }
  assert.equal(sm.lessor.size, 5);
});
