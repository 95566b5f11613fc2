import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  type LoadConfigOptions,
  loadConfig,
  parseAddress,
  parseDurationMs,
  parsePeersList,
  parseSizeBytes,
  type TandemConfig,
} from '../../src/cli/config.js';
import { CONFIG_OVERRIDES } from '../../src/cli/config-overrides.js';

/** The repository's examples/, wherever the tests run from. */
const examplesDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples');
const dir = mkdtempSync(join(tmpdir(), 'tandem-config-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
/** Writes `yaml` to a fresh node.yaml in its own directory; returns its path. */
function writeConfig(yaml: string): string {
  const sub = join(dir, `case${fileCount++}`);
  mkdirSync(sub);
  const file = join(sub, 'node.yaml');
  writeFileSync(file, yaml);
  return file;
}

function load(yaml: string, options: Omit<LoadConfigOptions, 'file'> = {}): TandemConfig {
  return loadConfig({ file: writeConfig(yaml), env: {}, flags: {}, ...options });
}

/** The config error's lines with the temp file's path replaced by `node.yaml`. */
function errorLines(yaml: string | null, options: Omit<LoadConfigOptions, 'file'> = {}): string[] {
  const file = yaml === null ? undefined : writeConfig(yaml);
  try {
    loadConfig({ file, env: {}, flags: {}, ...options });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.issues.length, error.message.split('\n').length);
    return error.message.split('\n').map((line) => line.replace(file ?? '\0', 'node.yaml'));
  }
  assert.fail('expected a config error');
}

describe('valid configurations', () => {
  test('only a name: every default applied, single-member cluster', () => {
    const file = writeConfig('name: n1\n');
    const config = loadConfig({ file, env: {} });
    assert.deepEqual(config, {
      name: 'n1',
      dataDir: resolve(file, '..', 'data', 'n1'),
      listen: { client: '127.0.0.1:2379', peer: '127.0.0.1:2380', admin: '127.0.0.1:2381' },
      zone: 'default',
      role: 'voter',
      peers: [],
      cluster: { state: 'new', token: 'tandem', secret: null, secretFile: null },
      replication: {
        voters: 1,
        ack: 'quorum',
        readDefault: 'linearizable',
        preferLeaderZone: null,
      },
      redundancy: {
        replaceAfterMs: 10_000,
        preferSameZone: true,
        standby: { mode: 'hot', snapshotEveryMs: 60_000 },
      },
      wal: { mirror: null, segmentBytes: 64 * 1024 * 1024 },
      quota: { backendBytes: 2 * 1024 * 1024 * 1024 },
      limits: {
        leasesMax: 1_000_000,
        concurrentStreamsMax: 10_000,
        grpcKeepaliveMinTimeMs: 5_000,
        grpcKeepalivePermitWithoutStream: false,
      },
      raft: { heartbeatMs: 100, electionMs: 1000, snapshotEntries: 10_000, fastFailover: true },
      tls: { client: null, peer: null, admin: null },
      backup: null,
      auth: { jwt: null },
      testMode: { faultInjection: false, devControls: null, faultsOffLoopback: false },
    } satisfies TandemConfig);
  });

  test('the DESIGN.md example, fully specified', () => {
    const config = load(
      `
name: n1
dataDir: ./data/n1
listen: { client: 127.0.0.1:2379, peer: 127.0.0.1:2380, admin: 127.0.0.1:2381 }
zone: eu-west-1a
peers:
  - { name: n2, addresses: [127.0.0.1:12380, 127.0.0.2:12380] }
  - { name: n3, addresses: ['[::1]:22380'] }
replication:
  voters: 3
  ack: all
  readDefault: lease
  preferLeaderZone: eu-west-1a
redundancy:
  replaceAfter: 1m30s
  preferSameZone: false
  standby: { mode: warm, snapshotEvery: 5s }
wal: { mirror: /mnt/disk2/n1-wal, segmentBytes: 16MiB }
raft: { heartbeatMs: 50, electionMs: 500, snapshotEntries: 5000, fastFailover: false }
`,
      { checkFiles: false },
    );
    assert.equal(config.zone, 'eu-west-1a');
    assert.deepEqual(config.peers[0], {
      name: 'n2',
      addresses: ['127.0.0.1:12380', '127.0.0.2:12380'],
      role: 'voter',
      standbyMode: 'hot',
    });
    assert.deepEqual(config.peers[1]!.addresses, ['[::1]:22380']);
    assert.deepEqual(config.replication, {
      voters: 3,
      ack: 'all',
      readDefault: 'lease',
      preferLeaderZone: 'eu-west-1a',
    });
    assert.equal(config.redundancy.replaceAfterMs, 90_000);
    assert.deepEqual(config.redundancy.standby, { mode: 'warm', snapshotEveryMs: 5000 });
    assert.deepEqual(config.wal, { mirror: '/mnt/disk2/n1-wal', segmentBytes: 16 * 1024 * 1024 });
    assert.deepEqual(config.raft, {
      heartbeatMs: 50,
      electionMs: 500,
      snapshotEntries: 5000,
      fastFailover: false,
    });
  });

  test('voters default to 3 when there are members enough, else the largest odd count', () => {
    const peers = (n: number) =>
      Array.from(
        { length: n },
        (_, i) => `  - { name: p${i}, addresses: [10.0.0.${i + 1}:2380] }`,
      ).join('\n');
    assert.equal(load(`name: a\npeers:\n${peers(1)}\n`).replication.voters, 1);
    assert.equal(load(`name: a\npeers:\n${peers(2)}\n`).replication.voters, 3);
    assert.equal(load(`name: a\npeers:\n${peers(5)}\n`).replication.voters, 3);
  });

  test('founding roles: replicas and standbys do not count towards the default voters', () => {
    const config = load(`name: n4
role: standby
redundancy: { standby: { mode: warm } }
peers:
  - { name: n1, addresses: [127.0.0.1:12380] }
  - { name: n2, addresses: [127.0.0.1:22380] }
  - { name: n3, addresses: [127.0.0.1:32380] }
  - { name: n5, addresses: [127.0.0.1:52380], role: replica }
  - { name: n6, addresses: [127.0.0.1:62380], role: standby, standbyMode: hot }
`);
    assert.equal(config.role, 'standby');
    assert.equal(config.redundancy.standby.mode, 'warm');
    assert.equal(config.replication.voters, 3);
    assert.deepEqual(
      config.peers.map((p) => [p.name, p.role, p.standbyMode]),
      [
        ['n1', 'voter', 'hot'],
        ['n2', 'voter', 'hot'],
        ['n3', 'voter', 'hot'],
        ['n5', 'replica', 'hot'],
        ['n6', 'standby', 'hot'],
      ],
    );
    assert.deepEqual(
      errorLines(
        'name: n1\nrole: replica\npeers: [{ name: n2, addresses: [127.0.0.1:2], role: standby }]\n',
      ),
      [
        'config error in node.yaml: role: a new cluster needs at least one voter among this node and its peers',
      ],
    );
    assert.deepEqual(errorLines('name: n1\nrole: boss\n'), [
      'config error in node.yaml: role: expected one of voter | replica | standby, got "boss"',
    ]);
  });

  test('relative paths resolve against the file directory; TLS files are checked', () => {
    const file = writeConfig('');
    const base = resolve(file, '..');
    writeFileSync(join(base, 'cert.pem'), 'x');
    writeFileSync(join(base, 'key.pem'), 'x');
    writeFileSync(join(base, 'ca.pem'), 'x');
    writeFileSync(
      file,
      'name: n1\nwal: { mirror: ../mirror }\ntls:\n  client: { cert: cert.pem, key: key.pem }\n' +
        '  peer: { cert: cert.pem, key: key.pem, ca: ca.pem }\n',
    );
    const config = loadConfig({ file, env: {}, cwd: '/somewhere/else' });
    assert.equal(config.dataDir, join(base, 'data', 'n1'));
    assert.equal(config.wal.mirror, resolve(base, '..', 'mirror'));
    assert.deepEqual(config.tls.client, {
      cert: join(base, 'cert.pem'),
      key: join(base, 'key.pem'),
      ca: null,
    });
    assert.equal(config.tls.peer?.ca, join(base, 'ca.pem'));
    assert.equal(config.tls.peer?.checkNames, true, 'peer certificates bound to names by default');
    assert.equal(config.tls.admin, null);
  });

  test('tls.admin, and tls.peer.checkNames off from the environment', () => {
    const file = writeConfig('');
    const base = resolve(file, '..');
    for (const f of ['cert.pem', 'key.pem', 'ca.pem']) writeFileSync(join(base, f), 'x');
    writeFileSync(
      file,
      'name: n1\ntls:\n  admin: { cert: cert.pem, key: key.pem, ca: ca.pem }\n' +
        '  peer: { cert: cert.pem, key: key.pem, ca: ca.pem }\n',
    );
    const config = loadConfig({ file, env: { TANDEM_TLS_PEER_CHECK_NAMES: 'false' } });
    assert.deepEqual(config.tls.admin, {
      cert: join(base, 'cert.pem'),
      key: join(base, 'key.pem'),
      ca: join(base, 'ca.pem'),
    });
    assert.equal(config.tls.peer?.checkNames, false);
    writeFileSync(file, 'name: n1\ntls:\n  admin: { cert: nope.pem, key: key.pem }\n');
    assert.throws(
      () => loadConfig({ file, env: {} }),
      /tls\.admin\.cert: cannot read \/.*\/nope\.pem \(ENOENT\)/,
    );
  });

  test('backup: every and dir required, keep defaults to 7, dir relative to the file', () => {
    const file = writeConfig('name: n1\nbackup: { every: 1h, dir: ../backups }\n');
    const config = loadConfig({ file, env: {}, flags: {} });
    assert.deepEqual(config.backup, {
      everyMs: 3_600_000,
      keep: 7,
      dir: resolve(file, '..', '..', 'backups'),
    });
    assert.equal(load('name: n1\n').backup, null);
    assert.deepEqual(errorLines('name: n1\nbackup: { every: 10ms, keep: 0, dir: b }\n'), [
      'config error in node.yaml: backup.every: expected a duration between 1s and 168h, got "10ms"',
      'config error in node.yaml: backup.keep: expected an integer between 1 and 1000, got 0',
    ]);
    assert.match(
      errorLines('name: n1\nbackup: { keep: 2 }\n').join('\n'),
      /backup.every: required/,
    );
  });

  test('an empty file with the name from the environment', () => {
    const config = load('', { env: { TANDEM_NAME: 'from-env' } });
    assert.equal(config.name, 'from-env');
  });

  test('no file at all: environment, flags and defaults', () => {
    const config = loadConfig({ env: {}, flags: { name: 'solo', dataDir: 'd' }, cwd: '/srv' });
    assert.equal(config.name, 'solo');
    assert.equal(config.dataDir, '/srv/d');
  });
});

test('YAML whose alias has no anchor is a syntax error, not a crash (found by fuzzing)', () => {
  assert.throws(
    () => load('*-'),
    (error: unknown) => error instanceof ConfigError && error.code === 'CONFIG_SYNTAX',
  );
});

describe('examples/', () => {
  for (const name of ['node1', 'node2', 'node3']) {
    test(`${name}.yaml validates`, () => {
      // checkFiles: false, since cluster.secret is made by whoever runs them (git-ignored).
      const config = loadConfig({
        file: join(examplesDir, `${name}.yaml`),
        env: {},
        checkFiles: false,
      });
      assert.equal(config.name, name);
      assert.equal(config.cluster.secretFile, join(examplesDir, 'cluster.secret'));
      assert.equal(config.peers.length, 2);
      assert.equal(config.replication.voters, 3);
    });
  }

  test('the three members agree: each lists the other two at their own peer address', () => {
    const configs = ['node1', 'node2', 'node3'].map((name) =>
      loadConfig({ file: join(examplesDir, `${name}.yaml`), env: {}, checkFiles: false }),
    );
    for (const config of configs) {
      for (const peer of config.peers) {
        const other = configs.find((c) => c.name === peer.name);
        assert.ok(other, `${config.name} lists unknown peer ${peer.name}`);
        assert.deepEqual(peer.addresses, [other.listen.peer]);
        assert.equal(other.cluster.token, config.cluster.token);
      }
    }
    const ports = configs.flatMap((c) => [c.listen.client, c.listen.peer, c.listen.admin]);
    assert.equal(new Set(ports).size, ports.length, 'every listen address distinct');
  });
});

describe('errors name the source, the field and what is wrong', () => {
  const cases: [title: string, yaml: string, expected: string[]][] = [
    [
      'even voter count',
      'name: n1\nreplication: { voters: 4 }\n',
      [
        'config error in node.yaml: replication.voters: expected an odd number between 1 and 7, got 4',
      ],
    ],
    [
      'missing name',
      'zone: z\n',
      [
        'config error in node.yaml: name: required field is missing (set name in the config file, TANDEM_NAME or --name)',
      ],
    ],
    [
      'bad name',
      'name: "n 1"\n',
      [
        `config error in node.yaml: name: expected a name of 1-63 letters, digits, '.', '_' or '-', got "n 1"`,
      ],
    ],
    [
      'unknown top-level field with a suggestion',
      'name: n1\nreplicaton: { voters: 3 }\n',
      ['config error in node.yaml: replicaton: unknown field (did you mean replication?)'],
    ],
    [
      'unknown nested field',
      'name: n1\nraft: { heartbeatMS: 100 }\n',
      ['config error in node.yaml: raft.heartbeatMS: unknown field (did you mean heartbeatMs?)'],
    ],
    [
      'unknown field inside a peer',
      'name: n1\npeers: [{ name: n2, address: [127.0.0.1:1] }]\n',
      [
        'config error in node.yaml: peers[0].addresses: required field is missing',
        'config error in node.yaml: peers[0].address: unknown field (did you mean addresses?)',
      ],
    ],
    [
      'enum',
      'name: n1\nreplication: { ack: majority }\n',
      ['config error in node.yaml: replication.ack: expected one of quorum | all, got "majority"'],
    ],
    [
      'duration without a unit',
      'name: n1\nredundancy: { replaceAfter: 10 }\n',
      [
        'config error in node.yaml: redundancy.replaceAfter: expected a duration like 500ms, 10s, 1m or 1h30m, got 10 (add a unit: ms, s, m or h)',
      ],
    ],
    [
      'duration with a bad unit',
      'name: n1\nredundancy: { replaceAfter: 10sec }\n',
      [
        'config error in node.yaml: redundancy.replaceAfter: expected a duration like 500ms, 10s, 1m or 1h30m, got "10sec"',
      ],
    ],
    [
      'duration out of range',
      'name: n1\nredundancy: { standby: { snapshotEvery: 10ms } }\n',
      [
        'config error in node.yaml: redundancy.standby.snapshotEvery: expected a duration between 1s and 24h, got "10ms"',
      ],
    ],
    [
      'decimal size unit',
      'name: n1\nwal: { segmentBytes: 64MB }\n',
      [
        'config error in node.yaml: wal.segmentBytes: expected a size like 64MiB, 512KiB or a byte count, got "64MB" (MB is ambiguous; write MiB (binary units))',
      ],
    ],
    [
      'size out of range',
      'name: n1\nwal: { segmentBytes: 4KiB }\n',
      [
        'config error in node.yaml: wal.segmentBytes: expected a size between 1MiB and 1GiB, a multiple of 8 bytes, got "4KiB"',
      ],
    ],
    [
      'address without a port',
      'name: n1\nlisten: { client: 127.0.0.1 }\n',
      [
        'config error in node.yaml: listen.client: expected host:port (IPv6 as [::1]:2380), got "127.0.0.1" (the port is missing)',
      ],
    ],
    [
      'port out of range',
      'name: n1\nlisten: { admin: "127.0.0.1:70000" }\n',
      [
        'config error in node.yaml: listen.admin: expected host:port (IPv6 as [::1]:2380) with a port between 1 and 65535, got "127.0.0.1:70000"',
      ],
    ],
    [
      'bad IPv4 in a peer address',
      'name: n1\npeers: [{ name: n2, addresses: [127.0.0.300:2380] }]\n',
      [
        'config error in node.yaml: peers[0].addresses[0]: expected host:port (IPv6 as [::1]:2380), got "127.0.0.300:2380" (127.0.0.300 is not an IPv4 address)',
      ],
    ],
    [
      'addresses given as a scalar',
      'name: n1\npeers: [{ name: n2, addresses: 127.0.0.1:2380 }]\n',
      ['config error in node.yaml: peers[0].addresses: expected a list, got "127.0.0.1:2380"'],
    ],
    [
      'a section given as a scalar',
      'name: n1\nraft: 100\n',
      ['config error in node.yaml: raft: expected a mapping, got 100'],
    ],
    [
      'wrong type',
      'name: n1\nredundancy: { preferSameZone: "yes" }\n',
      ['config error in node.yaml: redundancy.preferSameZone: expected true or false, got "yes"'],
    ],
    [
      'several problems are all reported',
      'name: n1\nraft: { heartbeatMs: 5, electionMs: 100000 }\n',
      [
        'config error in node.yaml: raft.heartbeatMs: expected an integer between 10 and 10000, got 5',
        'config error in node.yaml: raft.electionMs: expected an integer between 50 and 50000, got 100000',
      ],
    ],
  ];
  for (const [title, yaml, expected] of cases) {
    test(title, () => assert.deepEqual(errorLines(yaml), expected));
  }
});

describe('relations between fields', () => {
  const cases: [title: string, yaml: string, expected: string][] = [
    [
      'election timeout under 5 heartbeats',
      'name: n1\nraft: { heartbeatMs: 300, electionMs: 1000 }\n',
      'config error in node.yaml: raft.electionMs: must be at least 5 × raft.heartbeatMs (1500), got 1000: shorter, and followers call elections on ordinary jitter',
    ],
    [
      'replaceAfter shorter than an election',
      'name: n1\nredundancy: { replaceAfter: 500ms }\n',
      'config error in node.yaml: redundancy.replaceAfter: must be longer than raft.electionMs (1000ms), got 500ms: a voter would be replaced before a new leader could even be elected',
    ],
    [
      'more voters than initial members',
      'name: n1\nreplication: { voters: 3 }\npeers: [{ name: n2, addresses: [127.0.0.1:12380] }]\n',
      'config error in node.yaml: replication.voters: 3 voters need at least 3 members, but the initial cluster has 2 (this node and 1 peers)',
    ],
    [
      'joining an existing cluster without peers',
      'name: n1\ncluster: { state: existing }\n',
      'config error in node.yaml: peers: joining an existing cluster (cluster.state: existing) needs at least one peer to contact',
    ],
    [
      'a peer with this node name',
      'name: n1\npeers: [{ name: n1, addresses: [127.0.0.1:12380] }]\n',
      "config error in node.yaml: peers[0].name: n1 is this node's own name",
    ],
    [
      'duplicate peer names',
      'name: n1\npeers:\n  - { name: n2, addresses: [127.0.0.1:12380] }\n  - { name: n2, addresses: [127.0.0.1:22380] }\n',
      'config error in node.yaml: peers[1].name: duplicate peer name (also peers[0])',
    ],
    [
      "a peer at this node's own peer address",
      'name: n1\npeers: [{ name: n2, addresses: [127.0.0.1:2380] }]\n',
      'config error in node.yaml: peers[0].addresses[0]: 127.0.0.1:2380 is already used by listen.peer',
    ],
    [
      'two listeners on one address',
      'name: n1\nlisten: { client: 127.0.0.1:2380 }\n',
      'config error in node.yaml: listen.peer: 127.0.0.1:2380 is already used by listen.client',
    ],
    [
      'a wildcard listener clashes with the same port on any host',
      'name: n1\nlisten: { client: 0.0.0.0:2379, peer: 127.0.0.2:2379 }\n',
      'config error in node.yaml: listen.peer: port 2379 is already used by listen.client (0.0.0.0:2379)',
    ],
    [
      'a wildcard peer address',
      'name: n1\npeers: [{ name: n2, addresses: [0.0.0.0:12380] }]\n',
      'config error in node.yaml: peers[0].addresses[0]: 0.0.0.0:12380 is a wildcard; give an address peers can dial',
    ],
    [
      'two wildcard listeners on one port: one message',
      'name: n1\nlisten: { client: 0.0.0.0:2379, peer: 0.0.0.0:2379 }\n',
      'config error in node.yaml: listen.peer: port 2379 is already used by listen.client (0.0.0.0:2379)',
    ],
    [
      'mirror inside dataDir',
      'name: n1\ndataDir: /var/lib/tandem\nwal: { mirror: /var/lib/tandem/mirror }\n',
      'config error in node.yaml: wal.mirror: /var/lib/tandem/mirror is inside dataDir (/var/lib/tandem); a mirror must live elsewhere, ideally on another disk',
    ],
  ];
  for (const [title, yaml, expected] of cases) {
    test(title, () => assert.deepEqual(errorLines(yaml), [expected]));
  }

  test('missing TLS files are reported with their resolved path', () => {
    const lines = errorLines('name: n1\ntls: { peer: { cert: c.pem, key: k.pem, ca: ca.pem } }\n');
    assert.equal(lines.length, 3);
    assert.match(
      lines[0]!,
      /^config error in node\.yaml: tls\.peer\.cert: cannot read \/.*\/c\.pem \(ENOENT\)$/,
    );
  });

  test('peer TLS needs a CA (links are mutual TLS)', () => {
    assert.deepEqual(errorLines('name: n1\ntls: { peer: { cert: c.pem, key: k.pem } }\n'), [
      'config error in node.yaml: tls.peer.ca: required field is missing',
    ]);
  });
});

describe('reading the file', () => {
  test('missing file', () => {
    assert.deepEqual(errorLines(null, { flags: {} }).length, 1);
    try {
      loadConfig({ file: join(dir, 'nope.yaml'), env: {} });
      assert.fail('expected an error');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, 'CONFIG_READ');
      assert.match(error.message, /nope\.yaml: cannot read the file \(ENOENT\)$/);
    }
  });

  test('YAML syntax error names the line', () => {
    const lines = errorLines('name: n1\nlisten: { client: 127.0.0.1:2379\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^config error in node\.yaml: invalid YAML: .*line 3/);
  });

  test('duplicate keys are refused', () => {
    const lines = errorLines('name: n1\nname: n2\n');
    assert.match(lines[0]!, /^config error in node\.yaml: invalid YAML: Map keys must be unique/);
  });

  test('a top level that is not a mapping', () => {
    assert.deepEqual(errorLines('- name: n1\n'), [
      'config error in node.yaml: expected a mapping of fields at the top level, got a list',
    ]);
  });
});

describe('overrides: file < environment < flags', () => {
  const yaml = 'name: n1\nlisten: { client: 127.0.0.1:2379 }\nraft: { heartbeatMs: 100 }\n';

  test('the environment overrides the file', () => {
    const config = load(yaml, {
      env: { TANDEM_LISTEN_CLIENT: '127.0.0.1:3379', TANDEM_RAFT_HEARTBEAT_MS: '50', PATH: '/bin' },
    });
    assert.equal(config.listen.client, '127.0.0.1:3379');
    assert.equal(config.raft.heartbeatMs, 50);
  });

  test('flags override the environment (kebab-case or commander camelCase keys)', () => {
    const config = load(yaml, {
      env: { TANDEM_LISTEN_CLIENT: '127.0.0.1:3379', TANDEM_NAME: 'env-name' },
      flags: {
        'listen-client': '127.0.0.1:4379',
        name: 'flag-name',
        raftHeartbeatMs: 20,
        config: 'x',
      },
    });
    assert.equal(config.listen.client, '127.0.0.1:4379');
    assert.equal(config.name, 'flag-name');
    assert.equal(config.raft.heartbeatMs, 20);
  });

  test('undefined flags (options not given) leave lower layers alone', () => {
    const config = load(yaml, { env: { TANDEM_NAME: 'env-name' }, flags: { name: undefined } });
    assert.equal(config.name, 'env-name');
  });

  test('paths from the environment resolve against the working directory', () => {
    const config = load(yaml, {
      env: { TANDEM_DATA_DIR: 'here', TANDEM_WAL_MIRROR: 'm' },
      cwd: '/w',
    });
    assert.equal(config.dataDir, '/w/here');
    assert.equal(config.wal.mirror, '/w/m');
    assert.equal(
      load('name: n1\nwal: { mirror: /x }\n', { env: { TANDEM_WAL_MIRROR: 'null' } }).wal.mirror,
      null,
    );
  });

  test('booleans, durations, sizes and peers from strings', () => {
    const config = load('name: n1\n', {
      env: {
        TANDEM_REDUNDANCY_PREFER_SAME_ZONE: 'false',
        TANDEM_REDUNDANCY_REPLACE_AFTER: '30s',
        TANDEM_WAL_SEGMENT_BYTES: '128MiB',
        TANDEM_PEERS: 'n2=127.0.0.1:12380,n3=127.0.0.1:22380,n2=127.0.0.2:12380',
      },
    });
    assert.equal(config.redundancy.preferSameZone, false);
    assert.equal(config.redundancy.replaceAfterMs, 30_000);
    assert.equal(config.wal.segmentBytes, 128 * 1024 * 1024);
    assert.deepEqual(config.peers, [
      {
        name: 'n2',
        addresses: ['127.0.0.1:12380', '127.0.0.2:12380'],
        role: 'voter',
        standbyMode: 'hot',
      },
      { name: 'n3', addresses: ['127.0.0.1:22380'], role: 'voter', standbyMode: 'hot' },
    ]);
    assert.equal(config.replication.voters, 3);
  });

  test("quota.backendBytes: etcd's --quota-backend-bytes (0 = 2GiB, at most 8GiB)", () => {
    const GiB = 1024 * 1024 * 1024;
    assert.equal(load('name: n1\nquota: { backendBytes: 0 }\n').quota.backendBytes, 2 * GiB);
    assert.equal(load('name: n1\nquota: { backendBytes: 8GiB }\n').quota.backendBytes, 8 * GiB);
    const flagged = load('name: n1\n', { flags: { 'quota-backend-bytes': '16MiB' } });
    assert.equal(flagged.quota.backendBytes, 16 * 1024 * 1024);
    assert.deepEqual(errorLines('name: n1\nquota: { backendBytes: 9GiB }\n'), [
      `config error in node.yaml: quota.backendBytes: expected a size of at most 8GiB (etcd's suggested maximum; 0 = the 2GiB default), got "9GiB"`,
    ]);
  });

  test("limits: leases, streams per connection, etcd's keep-alive policy, from file and flags", () => {
    const file = load(
      'name: n1\nlimits: { leasesMax: 10, concurrentStreamsMax: 64, grpcKeepaliveMinTime: 10s, grpcKeepalivePermitWithoutStream: true }\n',
    );
    assert.deepEqual(file.limits, {
      leasesMax: 10,
      concurrentStreamsMax: 64,
      grpcKeepaliveMinTimeMs: 10_000,
      grpcKeepalivePermitWithoutStream: true,
    });
    const flagged = load('name: n1\n', {
      flags: {
        'limits-leases-max': '5',
        'limits-concurrent-streams-max': '3',
        'limits-grpc-keepalive-min-time': '1m',
        'limits-grpc-keepalive-permit-without-stream': 'true',
      },
    });
    assert.deepEqual(flagged.limits, {
      leasesMax: 5,
      concurrentStreamsMax: 3,
      grpcKeepaliveMinTimeMs: 60_000,
      grpcKeepalivePermitWithoutStream: true,
    });
    assert.deepEqual(errorLines('name: n1\nlimits: { leasesMax: 0, grpcKeepaliveMinTime: 5 }\n'), [
      'config error in node.yaml: limits.leasesMax: expected an integer between 1 and 100000000, got 0',
      'config error in node.yaml: limits.grpcKeepaliveMinTime: expected a duration like 500ms, 10s, 1m or 1h30m, got 5 (add a unit: ms, s, m or h)',
    ]);
  });

  test('errors name the variable or flag that set the bad value', () => {
    assert.deepEqual(
      errorLines(yaml, {
        env: { TANDEM_REPLICATION_VOTERS: '4', TANDEM_REPLICATION_ACK: 'some' },
        flags: { 'raft-election-ms': 'soon' },
      }),
      [
        'config error in environment TANDEM_REPLICATION_VOTERS: replication.voters: expected an odd number between 1 and 7, got 4',
        'config error in environment TANDEM_REPLICATION_ACK: replication.ack: expected one of quorum | all, got "some"',
        'config error in flag --raft-election-ms: raft.electionMs: expected an integer between 50 and 50000, got "soon"',
      ],
    );
  });

  test('peers from the environment: bad items and bad addresses name the variable', () => {
    assert.deepEqual(errorLines('name: n1\n', { env: { TANDEM_PEERS: 'n2=127.0.0.1:1,n3' } }), [
      'config error in environment TANDEM_PEERS: peers: expected name=host:port[,name=host:port…], got "n2=127.0.0.1:1,n3" (bad item "n3")',
    ]);
    assert.deepEqual(errorLines('name: n1\n', { env: { TANDEM_PEERS: 'n2=nowhere' } }), [
      'config error in environment TANDEM_PEERS: peers[0].addresses[0]: expected host:port (IPv6 as [::1]:2380), got "nowhere" (the port is missing)',
    ]);
  });

  test('unknown TANDEM_ variables are typos, with a suggestion; reserved ones are not', () => {
    assert.deepEqual(
      errorLines(yaml, { env: { TANDEM_DATADIR: '/d', TANDEM_CONFIG: 'node.yaml' } }),
      [
        'config error in environment TANDEM_DATADIR: unknown variable (did you mean TANDEM_DATA_DIR?)',
      ],
    );
  });

  test('every field path has one variable and one flag, derived the same way', () => {
    const envs = new Set(CONFIG_OVERRIDES.map((o) => o.env));
    const flags = new Set(CONFIG_OVERRIDES.map((o) => o.flag));
    assert.equal(envs.size, CONFIG_OVERRIDES.length);
    assert.equal(flags.size, CONFIG_OVERRIDES.length);
    const byPath = new Map(CONFIG_OVERRIDES.map((o) => [o.path, o]));
    assert.equal(byPath.get('dataDir')?.env, 'TANDEM_DATA_DIR');
    assert.equal(byPath.get('listen.client')?.env, 'TANDEM_LISTEN_CLIENT');
    assert.equal(
      byPath.get('redundancy.standby.snapshotEvery')?.flag,
      'redundancy-standby-snapshot-every',
    );
  });
});

describe('value parsers', () => {
  test('durations', () => {
    assert.equal(parseDurationMs('500ms'), 500);
    assert.equal(parseDurationMs('10s'), 10_000);
    assert.equal(parseDurationMs('1.5s'), 1500);
    assert.equal(parseDurationMs('1h30m'), 5_400_000);
    assert.equal(parseDurationMs('1m30s250ms'), 90_250);
    for (const bad of ['', '10', 's', '10 s', '1.0001s', '-1s', `${'1s'.repeat(40)}`]) {
      assert.throws(() => parseDurationMs(bad), /expected/, bad);
    }
  });

  test('sizes', () => {
    assert.equal(parseSizeBytes('64MiB'), 64 * 1024 * 1024);
    assert.equal(parseSizeBytes('512KiB'), 512 * 1024);
    assert.equal(parseSizeBytes('1GiB'), 1024 ** 3);
    assert.equal(parseSizeBytes('1.5KiB'), 1536);
    assert.equal(parseSizeBytes(4096), 4096);
    assert.equal(parseSizeBytes('4096'), 4096);
    for (const bad of ['64MB', '64 mb', 'MiB', '-1', '0.5B', 1.5, true]) {
      assert.throws(() => parseSizeBytes(bad), /expected/, String(bad));
    }
  });

  test('addresses', () => {
    assert.equal(parseAddress('127.0.0.1:2379'), '127.0.0.1:2379');
    assert.equal(parseAddress('localhost:02379'), 'localhost:2379');
    assert.equal(parseAddress('node-1.example.com:1'), 'node-1.example.com:1');
    assert.equal(parseAddress('[::1]:65535'), '[::1]:65535');
    for (const bad of [
      '127.0.0.1',
      ':2379',
      '127.0.0.1:0',
      'h:65536',
      '::1:2379',
      '[zz]:1',
      'a_b:1',
      'h:p',
      5,
    ]) {
      assert.throws(() => parseAddress(bad), /expected host:port/, String(bad));
    }
  });

  test('peers list (etcd --initial-cluster form)', () => {
    assert.deepEqual(parsePeersList(''), []);
    assert.deepEqual(parsePeersList('a=h:1, b=h:2'), [
      { name: 'a', addresses: ['h:1'] },
      { name: 'b', addresses: ['h:2'] },
    ]);
    assert.throws(() => parsePeersList('=h:1'), /bad item/);
  });
});
