/**
 * freePorts, the launcher's port picker: distinct ports that can be bound, picked below the
 * kernel's ephemeral range where there is one (an outgoing connection could take a port from it
 * between the pick and a member's bind: EADDRINUSE in CI), and a taken port is never handed out.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { freePorts, listenPortRange } from '../../src/cli/local-net.js';

test('freePorts: distinct, bindable, below the ephemeral range', async () => {
  const ports = await freePorts(21);
  assert.equal(new Set(ports).size, 21, 'distinct');
  const range = listenPortRange();
  if (range !== null) {
    for (const port of ports) {
      assert.ok(port >= range.min && port <= range.max, `${port} in ${range.min}-${range.max}`);
    }
  }
  const servers = ports.map(() => createServer());
  try {
    await Promise.all(
      servers.map(
        (s, i) =>
          new Promise<void>((resolve, reject) => {
            s.once('error', reject);
            s.listen(ports[i], '127.0.0.1', resolve);
          }),
      ),
    );
    // With all of them held, new picks avoid every one.
    const more = await freePorts(16);
    for (const p of more) assert.ok(!ports.includes(p), `${p} is held, yet was handed out`);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
});

test('listenPortRange: below the kernel ephemeral range (Linux)', {
  skip: process.platform !== 'linux',
}, async () => {
  const { readFileSync } = await import('node:fs');
  const low = Number(
    readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
  );
  const range = listenPortRange();
  assert.ok(range !== null);
  assert.ok(range.max < low && range.min >= 1024);
});
