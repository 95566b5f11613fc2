/**
 * deploy/: the Kubernetes manifests and the systemd unit, read as the tools read them.
 *
 * Kubernetes (deploy/k8s, parsed with the `yaml` package as YAML 1.1, as kubectl does):
 * kustomization lists every file; kinds and namespaces; each StatefulSet's selector matches its
 * pod labels and its headless Service (publishing not-ready addresses, Parallel start); every
 * pod has a config in the ConfigMap that tandem's own config loader accepts, whose ports are
 * the container's, whose listen host is the pod's DNS name, and whose founders agree with every
 * other pod's; probes name ports that exist and paths a real admin server answers with 200;
 * every volume mount has its volume; the peer secret is the Secret `tandem-peer-secret`, key
 * `secret`, at the path the configs read.
 *
 * systemd (deploy/systemd/tandem@.service): the fields that matter, and `systemd-analyze
 * verify` when systemd is installed (skipped, naming the Debian package, otherwise).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { startAdminServer } from '../../src/api/admin.js';
import { loadConfig, type TandemConfig } from '../../src/cli/config.js';

const K8S_DIR = new URL('../../deploy/k8s/', import.meta.url);
const UNIT_PATH = new URL('../../deploy/systemd/tandem@.service', import.meta.url);
const NAMESPACE = 'tandem';
const SECRET_NAME = 'tandem-peer-secret';
const CLUSTER_DOMAIN = 'svc.cluster.local';

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML, checked field by field
type Doc = any;

function loadManifests(): { file: string; doc: Doc }[] {
  const docs: { file: string; doc: Doc }[] = [];
  for (const file of readdirSync(K8S_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    const text = readFileSync(new URL(file, K8S_DIR), 'utf8');
    for (const d of parseAllDocuments(text, { version: '1.1' })) {
      assert.deepEqual(d.errors, [], `${file}: YAML errors`);
      docs.push({ file, doc: d.toJS() });
    }
  }
  return docs;
}

const manifests = loadManifests();
const byKind = (kind: string): Doc[] =>
  manifests.filter((m) => m.doc.kind === kind).map((m) => m.doc);
const one = (kind: string, name: string): Doc => {
  const found = byKind(kind).filter((d) => d.metadata.name === name);
  assert.equal(found.length, 1, `one ${kind} ${name}`);
  return found[0];
};

/** True when every label of `selector` is in `labels`. */
function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/**
 * A member config from the ConfigMap through tandem's loader. `cluster.secretFile` names the
 * mounted Secret (absent here): the loader reads a stand-in file at a temp path instead, so the
 * rest of the config is checked whole.
 */
function loadMemberConfig(text: string, dir: string): TandemConfig {
  const raw = parseYaml(text) as Doc;
  assert.equal(typeof raw.cluster?.secretFile, 'string', `${raw.name}: cluster.secretFile`);
  const secretFile = join(dir, `${raw.name}.secret`);
  writeFileSync(secretFile, 'a-stand-in-for-the-mounted-secret-0123456789', { mode: 0o600 });
  const file = join(dir, `${raw.name}.yaml`);
  writeFileSync(file, JSON.stringify({ ...raw, cluster: { ...raw.cluster, secretFile } }));
  return loadConfig({ file, env: {} });
}

describe('deploy/k8s manifests', () => {
  test('kustomization lists exactly the manifest files; kinds and namespace', () => {
    const kustomization = byKind('Kustomization')[0];
    const files = readdirSync(K8S_DIR).filter(
      (f) => f.endsWith('.yaml') && f !== 'kustomization.yaml',
    );
    assert.deepEqual([...kustomization.resources].sort(), files.sort());
    const kinds = manifests.map((m) => m.doc.kind).sort();
    assert.deepEqual(kinds, [
      'ConfigMap',
      'Kustomization',
      'Namespace',
      'PodDisruptionBudget',
      'Service',
      'Service',
      'StatefulSet',
      'StatefulSet',
    ]);
    one('Namespace', NAMESPACE);
    for (const { doc, file } of manifests) {
      if (doc.kind === 'Namespace' || doc.kind === 'Kustomization') continue;
      assert.equal(doc.metadata.namespace, NAMESPACE, `${file} ${doc.kind}`);
      assert.ok(typeof doc.apiVersion === 'string' && doc.metadata.name, file);
    }
  });

  test('StatefulSets: selectors match labels, the headless Service, Parallel start', () => {
    const sets = byKind('StatefulSet');
    assert.deepEqual(sets.map((s) => s.metadata.name).sort(), ['tandem', 'tandem-standby']);
    for (const s of sets) {
      const labels = s.spec.template.metadata.labels;
      assert.ok(selects(s.spec.selector.matchLabels, labels), `${s.metadata.name} selector`);
      // Two sets never select each other's pods.
      for (const other of sets.filter((o) => o !== s)) {
        assert.ok(!selects(s.spec.selector.matchLabels, other.spec.template.metadata.labels));
      }
      assert.equal(s.spec.podManagementPolicy, 'Parallel', 'founders start together');
      const headless = one('Service', s.spec.serviceName);
      assert.equal(headless.spec.clusterIP, 'None');
      assert.equal(headless.spec.publishNotReadyAddresses, true);
      assert.ok(selects(headless.spec.selector, labels), 'the headless Service finds the pods');
      const client = one('Service', 'tandem');
      assert.ok(selects(client.spec.selector, labels), 'clients reach every member');
      const ports = s.spec.template.spec.containers[0].ports.map((p: Doc) => p.name);
      for (const svc of [headless, client]) {
        for (const p of svc.spec.ports) assert.ok(ports.includes(p.targetPort), p.targetPort);
      }
    }
    const pdb = one('PodDisruptionBudget', 'tandem-voters');
    assert.ok(
      selects(
        pdb.spec.selector.matchLabels,
        one('StatefulSet', 'tandem').spec.template.metadata.labels,
      ),
    );
    assert.ok(
      !selects(
        pdb.spec.selector.matchLabels,
        one('StatefulSet', 'tandem-standby').spec.template.metadata.labels,
      ),
    );
  });

  test('every pod has a valid config: its ports, its DNS name, the same founders', () => {
    const data: Record<string, string> = one('ConfigMap', 'tandem-config').data;
    const dir = mkdtempSync(join(tmpdir(), 'tandem-k8s-config-'));
    try {
      const configs = new Map<string, TandemConfig>();
      const pods: { pod: string; set: Doc }[] = [];
      for (const s of byKind('StatefulSet')) {
        for (let i = 0; i < s.spec.replicas; i++)
          pods.push({ pod: `${s.metadata.name}-${i}`, set: s });
      }
      assert.deepEqual(
        Object.keys(data).sort(),
        pods.map((p) => `${p.pod}.yaml`).sort(),
        'one config per pod, none extra',
      );
      for (const { pod, set } of pods) {
        const config = loadMemberConfig(data[`${pod}.yaml`]!, dir);
        configs.set(pod, config);
        const container = set.spec.template.spec.containers[0];
        const port = (name: string) =>
          container.ports.find((p: Doc) => p.name === name).containerPort;
        const dns = `${pod}.${set.spec.serviceName}.${NAMESPACE}.${CLUSTER_DOMAIN}`;
        assert.equal(config.name, pod);
        assert.equal(config.listen.client, `${dns}:${port('client')}`);
        assert.equal(config.listen.peer, `${dns}:${port('peer')}`);
        assert.equal(config.listen.admin, `0.0.0.0:${port('admin')}`);
        const dataMount = container.volumeMounts.find((m: Doc) => m.name === 'data');
        assert.ok(config.dataDir.startsWith(`${dataMount.mountPath}/`), config.dataDir);
        assert.equal(config.role, set.metadata.name === 'tandem' ? 'voter' : 'standby');
        // The pod's args name its file: $(POD_NAME) is the pod's name from the downward API.
        assert.deepEqual(container.args, ['start', '--config', '/etc/tandem/$(POD_NAME).yaml']);
        const podName = container.env.find((e: Doc) => e.name === 'POD_NAME');
        assert.equal(podName.valueFrom.fieldRef.fieldPath, 'metadata.name');
        const configMount = container.volumeMounts.find((m: Doc) => m.mountPath === '/etc/tandem');
        const configVolume = set.spec.template.spec.volumes.find(
          (v: Doc) => v.name === configMount.name,
        );
        assert.equal(configVolume.configMap.name, 'tandem-config');
      }
      // Founders agree: each lists every other pod, at its DNS name and peer port, with the role
      // that pod gives itself, and the same token.
      for (const [pod, config] of configs) {
        const others = [...configs.keys()].filter((p) => p !== pod).sort();
        assert.deepEqual(config.peers.map((p) => p.name).sort(), others, pod);
        for (const peer of config.peers) {
          const theirs = configs.get(peer.name)!;
          assert.deepEqual(peer.addresses, [theirs.listen.peer], `${pod} dials ${peer.name}`);
          assert.equal(peer.role, theirs.role, `${pod} on ${peer.name}'s role`);
          if (theirs.role === 'standby') {
            assert.equal(peer.standbyMode, theirs.redundancy.standby.mode, `${peer.name} mode`);
          }
        }
        assert.equal(config.cluster.token, configs.get('tandem-0')!.cluster.token);
        assert.equal(config.cluster.state, 'new');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the peer secret: Secret tandem-peer-secret key secret, where cluster.secretFile reads', () => {
    const data: Record<string, string> = one('ConfigMap', 'tandem-config').data;
    for (const s of byKind('StatefulSet')) {
      const spec = s.spec.template.spec;
      const volume = spec.volumes.find((v: Doc) => v.secret !== undefined);
      assert.equal(volume.secret.secretName, SECRET_NAME);
      assert.deepEqual(volume.secret.items, [{ key: 'secret', path: 'secret' }]);
      assert.equal(volume.secret.defaultMode, 0o440);
      const mount = spec.containers[0].volumeMounts.find((m: Doc) => m.name === volume.name);
      assert.equal(mount.readOnly, true);
      for (let i = 0; i < s.spec.replicas; i++) {
        const raw = parseYaml(data[`${s.metadata.name}-${i}.yaml`]!) as Doc;
        assert.equal(raw.cluster.secretFile, `${mount.mountPath}/secret`);
      }
    }
  });

  test('volume mounts have volumes, volumes are mounted; probes name real ports and routes', async () => {
    const paths = new Set<string>();
    for (const s of byKind('StatefulSet')) {
      const spec = s.spec.template.spec;
      const container = spec.containers[0];
      const volumes = [
        ...spec.volumes.map((v: Doc) => v.name),
        ...s.spec.volumeClaimTemplates.map((t: Doc) => t.metadata.name),
      ];
      const mounted = container.volumeMounts.map((m: Doc) => m.name);
      assert.deepEqual([...mounted].sort(), [...volumes].sort(), s.metadata.name);
      assert.equal(
        new Set(container.volumeMounts.map((m: Doc) => m.mountPath)).size,
        mounted.length,
      );
      const portNames = container.ports.map((p: Doc) => p.name);
      for (const kind of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        const probe = container[kind];
        assert.ok(probe?.httpGet, `${s.metadata.name} ${kind}`);
        assert.equal(probe.httpGet.port, 'admin', `${kind} on the admin port`);
        assert.ok(portNames.includes(probe.httpGet.port));
        paths.add(probe.httpGet.path);
      }
      assert.equal(container.readinessProbe.httpGet.path, '/ready');
      assert.equal(container.livenessProbe.httpGet.path, '/health');
    }
    // The paths against a real admin server: 200 while ready.
    const admin = await startAdminServer({
      listen: { host: '127.0.0.1', port: 0 },
      status: () => ({}),
      ready: () => ({ ready: true, reason: '' }),
      metrics: { contentType: 'text/plain', scrape: async () => '' },
      memberOp: async () => 'ok',
    });
    try {
      for (const path of paths) {
        const res = await fetch(`http://127.0.0.1:${admin.port}${path}`);
        assert.equal(res.status, 200, path);
        await res.arrayBuffer();
      }
      const missing = await fetch(`http://127.0.0.1:${admin.port}/no-such-route`);
      assert.equal(missing.status, 404, 'an unknown path would fail the probe');
      await missing.arrayBuffer();
    } finally {
      await admin.close();
    }
  });
});

describe('deploy/systemd/tandem@.service', () => {
  const text = readFileSync(UNIT_PATH, 'utf8');
  const entries = text
    .split('\n')
    .filter((l) => /^\w+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);
  const value = (key: string): string[] => entries.filter(([k]) => k === key).map(([, v]) => v);

  test('a config per instance, a restart policy, hardening, the secret as a credential', () => {
    assert.deepEqual(value('ExecStart'), [
      '/usr/local/bin/tandem start --config /etc/tandem/%i.yaml',
    ]);
    assert.deepEqual(value('Restart'), ['on-failure']);
    assert.deepEqual(value('KillSignal'), ['SIGTERM']);
    assert.deepEqual(value('StateDirectory'), ['tandem/%i']);
    assert.deepEqual(value('WorkingDirectory'), ['/var/lib/tandem/%i']);
    for (const [key, want] of [
      ['DynamicUser', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['CapabilityBoundingSet', ''],
      ['RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'],
      ['SystemCallFilter', '@system-service'],
    ] as const) {
      assert.deepEqual(value(key), [want], key);
    }
    // V8 writes and runs its JIT code: this option would kill the process at start.
    assert.deepEqual(value('MemoryDenyWriteExecute'), []);
    assert.deepEqual(value('LoadCredential'), ['cluster-secret:/etc/tandem/cluster-secret']);
    assert.ok(value('Environment').includes('TANDEM_CLUSTER_SECRET_FILE=%d/cluster-secret'));
  });

  test('systemd-analyze verify accepts it', (t) => {
    const found = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (found.error !== undefined) {
      t.skip('needs systemd-analyze (Debian systemd: apt-get install -y systemd)');
      return;
    }
    // verify needs the command to exist: the unit, instantiated, runs this repository's CLI.
    const dir = mkdtempSync(join(tmpdir(), 'tandem-unit-'));
    try {
      const cli = new URL('../../bin/tandem.js', import.meta.url).pathname;
      const unit = join(dir, 'tandem@n1.service');
      writeFileSync(unit, text.replaceAll('/usr/local/bin/tandem', cli));
      const verify = () =>
        spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 30_000 });
      const ok = verify();
      assert.equal(ok.status, 0, ok.stderr);
      assert.equal(ok.stderr.trim(), '', 'no warnings either');
      // And it does fail on a broken unit (the check can fail): a command that is not there.
      writeFileSync(unit, text.replaceAll('/usr/local/bin/tandem', '/nonexistent/tandem'));
      const broken = verify();
      assert.notEqual(broken.status, 0);
      assert.match(broken.stderr, /not executable/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
