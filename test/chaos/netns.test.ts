/**
 * Kernel networking for `tandem chaos --net kernel`: real namespaces, a bridge, veth pairs and
 * nftables rules, driven with real TCP between processes in the namespaces. As root (CI): the
 * members reach each other and the runner reaches them; a one-way cut drops only one direction's
 * new connections; a lossy link loses some but not all; heal restores everything; a run refuses
 * names that already exist; destroy leaves nothing behind. Not root: the kernel way says why it
 * is unavailable (and `--net auto` falls back to the transport's rules).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { test } from 'node:test';
import {
  cidrRange,
  KernelNet,
  KernelNetError,
  kernelNetUnavailable,
} from '../../src/chaos/netns.js';

const ROOT = process.getuid?.() === 0;
const PORT = 7001;
const CONNECT_TIMEOUT_MS = 800;

test('cidrRange', () => {
  assert.deepEqual(cidrRange('10.213.5.0/24'), [0x0ad50500, 0x0ad505ff]);
  assert.deepEqual(cidrRange('10.0.0.7/32'), [0x0a000007, 0x0a000007]);
  assert.equal(cidrRange('10.0.0/8'), null);
  assert.equal(cidrRange('300.0.0.0/8'), null);
});

/** Root without iproute2 or nftables: the kernel tests skip and say which package is missing. */
const MISSING_PACKAGE = /is not installed \(Debian: /;

test('kernel networking: unavailable means a reason, available means root', async (t) => {
  const why = await kernelNetUnavailable();
  if (!ROOT) assert.match(why ?? '', /root/);
  else if (why !== null && MISSING_PACKAGE.test(why)) t.skip(why);
  else assert.equal(why, null, `root, but: ${why}`);
});

/** Runs a one-line Node program inside a member's namespace; resolves with its stdout. */
function inside(net: KernelNet, index: number, code: string): Promise<string> {
  const argv = net.wrap(index, [process.execPath, '-e', code]);
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1));
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('exit', () => resolve(out.trim()));
  });
}

/** 'ok', 'timeout' or an error code: one TCP connection from `from` to `to`'s server. */
function probe(net: KernelNet, from: number, to: number): Promise<string> {
  return inside(
    net,
    from,
    `const s=require('net').connect(${PORT},'${net.address(to)}');s.setTimeout(${CONNECT_TIMEOUT_MS},()=>{console.log('timeout');process.exit()});s.on('data',()=>{console.log('ok');process.exit()});s.on('error',e=>{console.log(e.code);process.exit()})`,
  );
}

function probeFromRunner(net: KernelNet, to: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(PORT, net.address(to));
    s.setTimeout(CONNECT_TIMEOUT_MS, () => {
      s.destroy();
      resolve('timeout');
    });
    s.once('data', () => {
      s.destroy();
      resolve('ok');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

test('kernel networking: reach, one-way cut, loss, heal, refuse existing names, clean up', {
  timeout: 60_000,
}, async (t) => {
  if (!ROOT) {
    // Without root the kernel way must refuse clearly (CI runs as root and takes the path below).
    await assert.rejects(KernelNet.create({ members: 3 }), KernelNetError);
    return;
  }
  const why = await kernelNetUnavailable();
  if (why !== null && MISSING_PACKAGE.test(why)) {
    t.skip(why);
    return;
  }
  const net = await KernelNet.create({ members: 3 });
  const servers: ChildProcess[] = [];
  try {
    assert.match(net.prefix, new RegExp(`^tdm-${process.pid}-\\d+$`));
    for (let i = 0; i < 3; i++) {
      const argv = net.wrap(i, [
        process.execPath,
        '-e',
        `require('net').createServer(s=>s.end('x')).listen(${PORT},'${net.address(i)}',()=>console.log('up'))`,
      ]);
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
      servers.push(child);
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    }
    // The same names again are refused, and refusing removed nothing of the first.
    await assert.rejects(KernelNet.create({ members: 3, prefix: net.prefix }), /already exist/);
    assert.equal(await probeFromRunner(net, 1), 'ok');
    assert.equal(await probe(net, 0, 1), 'ok');
    assert.equal(await probe(net, 1, 0), 'ok');

    // One way: what n1 sends to n2 is dropped on arrival; n2 still reaches n3, n1 reaches n3.
    await net.drop([0], [1], 1);
    assert.equal(await probe(net, 0, 1), 'timeout');
    assert.equal(await probe(net, 0, 2), 'ok');
    assert.equal(await probe(net, 2, 1), 'ok');
    assert.equal(await probeFromRunner(net, 1), 'ok', 'the runner is never cut off');
    assert.match((await net.describe(1)).nft, /ip saddr 10\.213\.\d+\.1 drop/);
    await net.heal();
    assert.equal(await probe(net, 0, 1), 'ok');
    assert.doesNotMatch((await net.describe(1)).nft, /drop/);

    // A lossy link: a share of the packets, not all of them (the rule says so; TCP retransmits).
    await net.drop([2], [0], 0.3);
    assert.match((await net.describe(0)).nft, /numgen random mod 100 < 30 drop/);
    await net.heal();
  } finally {
    for (const s of servers)
      if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid, 'SIGKILL');
    await Promise.all(
      servers.map((s) => (s.exitCode === null ? new Promise((r) => s.once('exit', r)) : null)),
    );
    await net.destroy();
  }
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  assert.ok(!left.includes(net.prefix), `namespaces left behind:\n${left}`);
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  assert.ok(!links.includes(`tdm${process.pid.toString(36)}`), `links left behind:\n${links}`);
});
