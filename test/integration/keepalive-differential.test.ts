/**
 * Keep-alive enforcement beside a real etcd (Debian etcd-server 3.4, default
 * --grpc-keepalive-min-time 5s): the same raw node:http2 client opens a Watch stream, gets its
 * `created` response, then sends PINGs back to back. Both servers answer alike: GOAWAY
 * ENHANCE_YOUR_CALM with debug data "too_many_pings", and the connection closes.
 */
import assert from 'node:assert/strict';
import { connect, constants } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { startCluster } from './cluster.js';
import { ETCD_MISSING, type RealEtcd, startRealEtcd } from './real-etcd-single.js';

/** WatchRequest{create_request{key: "a"}}, framed as one gRPC message. */
const WATCH_CREATE = Buffer.from([0, 0, 0, 0, 5, 0x0a, 0x03, 0x0a, 0x01, 0x61]);
const PINGS_MAX = 50;

interface Outcome {
  readonly goawayCode: number | null;
  readonly goawayData: string;
  readonly closed: boolean;
  readonly pingsAnswered: number;
}

async function floodPings(endpoint: string): Promise<Outcome> {
  const session = connect(`http://${endpoint}`);
  let goawayCode: number | null = null;
  let goawayData = '';
  let closed = false;
  session.on('error', () => {});
  session.on('goaway', (code: number, _last: number, data?: Buffer) => {
    goawayCode = code;
    goawayData = data?.toString() ?? '';
  });
  session.on('close', () => {
    closed = true;
  });
  const stream = session.request({
    ':method': 'POST',
    ':path': '/etcdserverpb.Watch/Watch',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  const created = new Promise<void>((resolve, reject) => {
    stream.once('data', () => resolve());
    stream.once('close', () => reject(new Error('the watch closed before its created response')));
  });
  stream.write(WATCH_CREATE);
  await created;
  let pingsAnswered = 0;
  for (let i = 0; i < PINGS_MAX && !closed && goawayCode === null; i++) {
    const answered = await new Promise<boolean>((resolve) => {
      try {
        if (!session.ping((err) => resolve(err === null))) resolve(false);
      } catch {
        resolve(false);
      }
    });
    if (answered) pingsAnswered++;
  }
  const deadline = Date.now() + 5_000;
  while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  session.destroy();
  return { goawayCode, goawayData, closed, pingsAnswered };
}

describe('ping flood: tandem as etcd', { skip: ETCD_MISSING, timeout: 90_000 }, () => {
  let etcd: RealEtcd;
  let tandem: LocalCluster;

  before(async () => {
    [etcd, tandem] = await Promise.all([
      startRealEtcd('keepalive'),
      startCluster({ label: 'keepalive-diff', size: 1 }),
    ]);
  });

  after(async () => {
    await Promise.all([etcd?.stop(), tandem?.destroy({ kill: true })]);
  });

  test('both send GOAWAY ENHANCE_YOUR_CALM too_many_pings after the same pings', {
    timeout: 30_000,
  }, async () => {
    const fromEtcd = await floodPings(etcd.endpoint);
    const fromTandem = await floodPings(tandem.endpoints()[0]!);
    assert.deepEqual(fromEtcd, {
      goawayCode: constants.NGHTTP2_ENHANCE_YOUR_CALM,
      goawayData: 'too_many_pings',
      closed: true,
      pingsAnswered: fromEtcd.pingsAnswered,
    });
    assert.deepEqual(fromTandem, fromEtcd);
  });
});
