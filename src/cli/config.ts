/**
 * A member's configuration: one YAML file (DESIGN.md "Policies"), overridden by `TANDEM_*`
 * environment variables, overridden in turn by command-line flags. Everything is validated
 * before a member starts; a bad value is a `ConfigError` whose every line names the source, the
 * field path and what is wrong:
 *
 *   config error in node.yaml: replication.voters: expected an odd number between 1 and 7, got 4
 *
 * Paths (dataDir, wal.mirror, TLS files) written in the file are relative to the file's
 * directory, so `tandem start --config /etc/tandem/n1.yaml` means the same from any working
 * directory (systemd, containers); paths from the environment or flags are relative to the
 * working directory, where the shell that typed them is.
 *
 * Cluster bootstrap (etcd's --initial-cluster-state / --initial-cluster-token):
 * - `cluster.state: new` — this node and its `peers` are the initial members; every one of them
 *   must list the same members and the same `cluster.token` (a member refuses peers with another
 *   token, so two clusters bootstrapped from copied files never merge).
 * - `cluster.state: existing` — this node joins a running cluster: `peers` are contact points
 *   (at least one); it joins as whatever `member add` made it (a learner with `--learner`), and
 *   learns its member and cluster ids from the leader's first handshake (src/transport/join.ts).
 *
 * TLS (each port on its own; PEM files):
 * - `tls.client` {cert, key, ca?}: the client port speaks TLS; with `ca`, clients must present a
 *   certificate it signed (etcd's --client-cert-auth). The member publishes `https://` client
 *   URLs (etcdctl `member list` shows them).
 * - `tls.peer` {cert, key, ca, checkNames?}: peer links are mutual TLS, both sides verifying the
 *   other against `ca`; peer URLs say `https://`. Every member-to-member call uses these
 *   credentials: Raft traffic, snapshots, the WAL-repair fetch, a joiner's wait, and calls to
 *   another member's `https://` client port (lease keep-alive and time-to-live and ack=all
 *   forwarded to the leader, a standby forwarding its clients), where the peer certificate is the
 *   client certificate and the other's server certificate is verified against `tls.client.ca`
 *   and `tls.peer.ca`. Without `tls.peer`, those calls present the client port's own cert.
 * - Peer certificates are bound to member names (`checkNames`, default true; etcd's
 *   --peer-cert-allowed-cn / --peer-cert-allowed-hostname, always on): a certificate names a
 *   member when its subject CN or one of its DNS subjectAltNames is the member's name. A peer
 *   whose handshake claims member X must present a certificate naming X; a member dialing X
 *   refuses a server certificate that does not name X (besides the usual address check). A member
 *   whose name the cluster does not know yet (added by `member add`, not yet published) is
 *   accepted with any certificate of the CA that names no other member.
 * - `tls.admin` {cert, key, ca?}: the admin endpoint speaks HTTPS; with `ca`, callers must present
 *   a certificate it signed (`tandem status --cacert/--cert/--key`).
 * - `cluster.secret` or `cluster.secretFile` — the same random value on every member: every peer
 *   connection proves it holds it (src/transport/handshake.ts). Required to start a member
 *   (`readClusterSecret`); `tandem dev` and the local-cluster launcher generate one. Never
 *   derived from the token, never printed (not even in error messages).
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { JWT_SIGN_METHODS, JWT_TTL_MS_DEFAULT, type JwtSignMethod } from '../api/auth-jwt.js';
import {
  CONCURRENT_STREAMS_MAX_DEFAULT,
  CONCURRENT_STREAMS_MAX_LIMIT,
  KEEPALIVE_MIN_TIME_MS_DEFAULT,
  KEEPALIVE_MIN_TIME_MS_MAX,
  KEEPALIVE_PERMIT_WITHOUT_STREAM_DEFAULT,
} from '../api/limits.js';
import {
  ROLES,
  type Role,
  SNAPSHOT_EVERY_MS_DEFAULT,
  SNAPSHOT_EVERY_MS_MAX,
  SNAPSHOT_EVERY_MS_MIN,
  STANDBY_MODES,
  type StandbyMode,
  ZONE_LENGTH_MAX,
} from '../cluster/commands.js';
import { POLICY_DEFAULTS, REPLACE_AFTER_MS_MAX, VOTERS_MAX } from '../cluster/policy.js';
import type { PeerAddress } from '../io/network.js';
import { LEASES_MAX_DEFAULT, LEASES_MAX_LIMIT } from '../kv/lease/limits.js';
import { QUOTA_BYTES_DEFAULT, QUOTA_BYTES_MAX } from '../kv/quota.js';

/** A JWT lives at most a day (etcd has no bound; a stolen token should not live for ever). */
const JWT_TTL_MS_MAX = 24 * 3_600_000;

import { SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_OPTION_MAX } from '../storage/limits.js';
import { CLUSTER_SECRET_BYTES_MAX, CLUSTER_SECRET_BYTES_MIN } from '../transport/limits.js';
import { assert } from '../util/assert.js';
import { TandemError } from '../util/errors.js';
import { CONFIG_OVERRIDES, type ConfigOverride, ENV_NOT_CONFIG } from './config-overrides.js';

// ---------------------------------------------------------------------------------------------
// Limits (named, with units; relations asserted below)

// The cluster's own facts, stated in src/cluster and exported here as before.
export {
  REPLACE_AFTER_MS_MAX,
  SNAPSHOT_EVERY_MS_MAX,
  SNAPSHOT_EVERY_MS_MIN,
  type StandbyMode,
  VOTERS_MAX,
};

/** A config file is read whole; anything larger is not a config file. */
export const CONFIG_FILE_BYTES_MAX = 1024 * 1024;
/**
 * Member and zone names appear in metrics labels, logs and file names: short, plain; a zone
 * also fits the registry's limit.
 */
export const NAME_LENGTH_MAX = ZONE_LENGTH_MAX;
/** Members of one cluster = this node + its peers. */
export const PEERS_MAX = 63;
/** Redundant links per peer. */
export const PEER_ADDRESSES_MAX = 8;
export const CLUSTER_TOKEN_LENGTH_MAX = 128;
export const HEARTBEAT_MS_MIN = 10;
export const HEARTBEAT_MS_MAX = 10_000;
/** etcd's cap on --election-timeout: longer means minutes of unavailability after a crash. */
export const ELECTION_MS_MAX = 50_000;
/** etcd's rule: an election timeout under 5 heartbeats calls elections on ordinary jitter. */
export const ELECTION_HEARTBEATS_MIN = 5;
export const SNAPSHOT_ENTRIES_MIN = 100;
export const SNAPSHOT_ENTRIES_MAX = 10_000_000;
/** Tiny WAL segments are for storage tests; a member with them would rotate on every batch. */
export const CONFIG_SEGMENT_BYTES_MIN = 1024 * 1024;
/** A duration string longer than this is not a duration (bounds the parser's work). */
const DURATION_TEXT_LENGTH_MAX = 64;

assert(VOTERS_MAX % 2 === 1 && VOTERS_MAX <= PEERS_MAX + 1, 'voters fit in a cluster');
assert(ELECTION_HEARTBEATS_MIN * HEARTBEAT_MS_MIN <= ELECTION_MS_MAX, 'some heartbeat fits');
assert(CONFIG_SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT, 'default segment size allowed');
assert(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_OPTION_MAX, 'default segment size allowed');

// ---------------------------------------------------------------------------------------------
// The resolved configuration

export type AckPolicy = 'quorum' | 'all';
export type ReadConsistency = 'linearizable' | 'lease' | 'serializable';
export type ClusterState = 'new' | 'existing';
/** A member's role (src/cluster/commands.ts: voter, replica, standby). */
export type MemberRole = Role;

export interface PeerConfig {
  readonly name: string;
  /** One or more `host:port`; several = redundant links, the first preferred. */
  readonly addresses: readonly PeerAddress[];
  /** The peer's founding role (a new cluster's founders must agree on every member's). */
  readonly role: MemberRole;
  /** The peer's standby mode (where a founding standby rests: hot = learner, else outside). */
  readonly standbyMode: StandbyMode;
}

export interface ClientTlsConfig {
  readonly cert: string;
  readonly key: string;
  /** When set, clients must present a certificate signed by this CA. */
  readonly ca: string | null;
}

/** Peer links are always mutual TLS when enabled: both sides verify the other. */
export interface PeerTlsConfig {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  /** A peer's certificate must name the member it claims to be (see the header, "TLS"). */
  readonly checkNames: boolean;
}

/** The admin endpoint over HTTPS; with `ca`, callers must present a certificate it signed. */
export type AdminTlsConfig = ClientTlsConfig;

/** A validated member configuration: every default applied, every path absolute. */
export interface JwtConfig {
  readonly signMethod: JwtSignMethod;
  /** PEM private key file (the shared secret's file for HS256). */
  readonly privateKey: string;
  /** PEM public key file; null: derived from the private key. */
  readonly publicKey: string | null;
  readonly ttlMs: number;
}

export interface TandemConfig {
  readonly name: string;
  readonly dataDir: string;
  readonly listen: {
    readonly client: PeerAddress;
    readonly peer: PeerAddress;
    readonly admin: PeerAddress;
  };
  readonly zone: string;
  /**
   * This node's founding role: voters form the initial Raft configuration, replicas and hot
   * standbys join it as learners, warm and cold standbys are registered outside it. After that
   * the replicated registry decides (a demoted voter restarts as a standby whatever this says).
   */
  readonly role: MemberRole;
  readonly peers: readonly PeerConfig[];
  readonly cluster: {
    readonly state: ClusterState;
    readonly token: string;
    /** The peer secret itself, or null (then `secretFile`); see readClusterSecret. */
    readonly secret: string | null;
    readonly secretFile: string | null;
  };
  readonly replication: {
    readonly voters: number;
    readonly ack: AckPolicy;
    readonly readDefault: ReadConsistency;
    /** When several voters could lead, prefer one in this zone (null: no preference). */
    readonly preferLeaderZone: string | null;
  };
  readonly redundancy: {
    readonly replaceAfterMs: number;
    readonly preferSameZone: boolean;
    /** This node's mode whenever it is a standby. */
    readonly standby: { readonly mode: StandbyMode; readonly snapshotEveryMs: number };
  };
  readonly wal: { readonly mirror: string | null; readonly segmentBytes: number };
  /**
   * etcd's --quota-backend-bytes: once the KV store's file reaches `backendBytes`, writes that
   * grow it (put, txn with puts, lease grant) fail with "etcdserver: mvcc: database space
   * exceeded" and a NOSPACE alarm is raised through the log, capping every member until
   * `etcdctl alarm disarm` (after compacting and defragmenting). Default (and 0) 2 GiB as
   * etcd's; at most 8 GiB, the size above which etcd warns of degraded performance.
   */
  readonly quota: { readonly backendBytes: number };
  /**
   * Bounds on what clients can make a member hold (SECURITY.md, "Client port limits"):
   * - `leasesMax` (default 1,000,000; etcd has none): a LeaseGrant past it fails with
   *   RESOURCE_EXHAUSTED "tandem: too many leases (limits.leasesMax …)".
   * - `concurrentStreamsMax` (etcd's --max-concurrent-streams; default 10,000, etcd's is
   *   unlimited): HTTP/2 streams open at once on one client connection.
   * - `grpcKeepaliveMinTime` (etcd's --grpc-keepalive-min-time, default 5s) and
   *   `grpcKeepalivePermitWithoutStream` (etcd: always false): a client pinging more often is
   *   sent away with GOAWAY ENHANCE_YOUR_CALM "too_many_pings", as etcd (grpc-go) does.
   */
  readonly limits: {
    readonly leasesMax: number;
    readonly concurrentStreamsMax: number;
    readonly grpcKeepaliveMinTimeMs: number;
    readonly grpcKeepalivePermitWithoutStream: boolean;
  };
  readonly raft: {
    readonly heartbeatMs: number;
    readonly electionMs: number;
    /**
     * A snapshot (and log compaction) comes after this many entries; a state image over 1 MiB
     * waits until the log since the last snapshot is 4× its size, at most 5× this many entries
     * (Member's snapshotDue: packing a large state every N entries cost CPU per put growing
     * with the state).
     */
    readonly snapshotEntries: number;
    /**
     * A follower that sees the leader's process gone (every address refuses connections) calls
     * an election within a few heartbeats instead of waiting out electionMs.
     */
    readonly fastFailover: boolean;
  };
  readonly tls: {
    readonly client: ClientTlsConfig | null;
    readonly peer: PeerTlsConfig | null;
    readonly admin: AdminTlsConfig | null;
  };
  /**
   * Scheduled backups (null: none): while this member leads, it writes a consistent snapshot
   * (etcd's format, as `etcdctl snapshot save` gets it) into `dir` every `everyMs`, checks it
   * back, and keeps the newest `keep` (cli/backup.ts).
   */
  readonly backup: { readonly everyMs: number; readonly keep: number; readonly dir: string } | null;
  /**
   * etcd's --auth-token. Without `jwt`, simple tokens (etcd's default): random, made through the
   * log so every member knows them, forgotten on restart. With `jwt`, signed tokens (etcd's
   * `jwt,sign-method=…,priv-key=…,pub-key=…,ttl=…`): every member must hold the same key.
   */
  readonly auth: { readonly jwt: JwtConfig | null };
  /**
   * TEST ONLY, never in production. `faultInjection`: the peer transport obeys drop and delay
   * rules per link, and the storage runs on the fault file system whose next fsync can be made
   * to fail, both set over the admin API (`POST /faults`, `DELETE /faults`); `tandem chaos`
   * uses it to partition and slow links without root and to fail WAL fsyncs. Off by default.
   * `devControls`: the `tandem dev` launcher's controls (host:port), which the dashboard offers
   * (kill, pause, restart, partition a member, start a load); null outside `tandem dev`.
   * The endpoint has no authentication: fault injection refuses to start unless `listen.admin`
   * is a loopback address, except with `faultsOffLoopback` (network-namespace test rigs, whose
   * addresses only their host reaches: `tandem chaos` in kernel mode).
   */
  readonly testMode: {
    readonly faultInjection: boolean;
    readonly devControls: PeerAddress | null;
    readonly faultsOffLoopback: boolean;
  };
}

// ---------------------------------------------------------------------------------------------
// Errors

export type ConfigErrorCode = 'CONFIG_INVALID' | 'CONFIG_READ' | 'CONFIG_SYNTAX';

export interface ConfigIssue {
  /** Where the bad value came from: the file name, `environment TANDEM_X` or `flag --x`. */
  readonly source: string | null;
  /** The field path, e.g. `peers[1].addresses[0]` (empty for the whole file). */
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends TandemError<ConfigErrorCode> {
  readonly issues: readonly ConfigIssue[];
  constructor(
    code: ConfigErrorCode,
    issues: readonly ConfigIssue[],
    options?: { cause?: unknown },
  ) {
    assert(issues.length > 0, 'a config error has at least one issue');
    super(code, issues.map(formatIssue).join('\n'), options);
    this.issues = issues;
  }
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.source === null ? 'config error' : `config error in ${issue.source}`;
  return issue.path === ''
    ? `${where}: ${issue.message}`
    : `${where}: ${issue.path}: ${issue.message}`;
}

// ---------------------------------------------------------------------------------------------
// Field parsers: each takes the raw value and returns the parsed one or throws `Invalid` with a
// message in the form "expected …, got …". Zod gives the structure (unknown keys, nesting,
// paths); these give messages a user can act on.

class Invalid extends Error {}

function invalid(expected: string, value: unknown, hint?: string): never {
  throw new Invalid(`expected ${expected}, got ${describe(value)}${hint ? ` (${hint})` : ''}`);
}

/** A short rendering of a bad value for error messages. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

const MISSING = 'required field is missing';

function field<T>(parse: (value: unknown) => T) {
  return z
    .unknown()
    .optional()
    .transform((value, ctx): T => {
      try {
        return parse(value);
      } catch (error) {
        if (!(error instanceof Invalid)) throw error;
        ctx.issues.push({ code: 'custom', message: error.message, input: value });
        return z.NEVER;
      }
    });
}

function withDefault<T>(fallback: T, parse: (value: unknown) => T): (value: unknown) => T {
  return (value) => (value === undefined ? fallback : parse(value));
}

function required<T>(parse: (value: unknown) => T): (value: unknown) => T {
  return (value) => {
    if (value === undefined) throw new Invalid(MISSING);
    return parse(value);
  };
}

const NAME_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

function parseName(value: unknown): string {
  const expected = `a name of 1-${NAME_LENGTH_MAX} letters, digits, '.', '_' or '-'`;
  if (typeof value !== 'string' || value.length > NAME_LENGTH_MAX || !NAME_PATTERN.test(value)) {
    invalid(expected, value);
  }
  return value;
}

function parseText(value: unknown, lengthMax: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > lengthMax) {
    invalid(`a non-empty string of at most ${lengthMax} characters`, value);
  }
  if ([...value].some((c) => c.charCodeAt(0) < 0x20))
    invalid('a string without control characters', value);
  return value;
}

function parsePath(value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') invalid('a file system path', value);
  if (value.includes(String.fromCharCode(0))) invalid('a path without NUL characters', value);
  return value;
}

function parseInteger(min: number, max: number): (value: unknown) => number {
  return (value) => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      invalid(`an integer between ${min} and ${max}`, value);
    }
    return value;
  };
}

function parseBool(value: unknown): boolean {
  if (typeof value !== 'boolean') invalid('true or false', value);
  return value;
}

function parseEnum<T extends string>(values: readonly T[]): (value: unknown) => T {
  return (value) => {
    if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
      invalid(`one of ${values.join(' | ')}`, value);
    }
    return value as T;
  };
}

function parseVoters(value: unknown): number {
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value < 1 ||
    value > VOTERS_MAX ||
    value % 2 === 0
  ) {
    invalid(`an odd number between 1 and ${VOTERS_MAX}`, value);
  }
  return value;
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3600_000,
};

/**
 * Go-style durations: `500ms`, `10s`, `1.5s`, `1m30s`, `2h`. A bare number is refused: `10`
 * could mean seconds or milliseconds, and guessing wrong silently is the worst outcome.
 */
export function parseDurationMs(text: string): number {
  const expected = 'a duration like 500ms, 10s, 1m or 1h30m';
  if (text.length === 0 || text.length > DURATION_TEXT_LENGTH_MAX) invalid(expected, text);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
  let totalMs = 0;
  let at = 0;
  while (at < text.length) {
    part.lastIndex = at;
    const match = part.exec(text);
    if (match === null) {
      const hint = /^\d+(\.\d+)?$/.test(text) ? 'add a unit: ms, s, m or h' : undefined;
      invalid(expected, text, hint);
    }
    totalMs += Number(match[1]) * DURATION_UNITS_MS[match[2]!]!;
    at = part.lastIndex;
  }
  if (!Number.isInteger(totalMs)) invalid('a whole number of milliseconds', text);
  return totalMs;
}

function parseDuration(minMs: number, maxMs: number): (value: unknown) => number {
  return (value) => {
    if (typeof value !== 'string') {
      invalid(
        'a duration like 500ms, 10s, 1m or 1h30m',
        value,
        typeof value === 'number' ? 'add a unit: ms, s, m or h' : undefined,
      );
    }
    const ms = parseDurationMs(value.trim());
    if (ms < minMs || ms > maxMs) {
      invalid(`a duration between ${formatMs(minMs)} and ${formatMs(maxMs)}`, value);
    }
    return ms;
  };
}

function formatMs(ms: number): string {
  if (ms % 3600_000 === 0) return `${ms / 3600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const SIZE_UNITS_BYTES: Readonly<Record<string, number>> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

/**
 * Sizes: a byte count (`67108864`) or a number with a binary unit (`64MiB`, `512KiB`, `1GiB`).
 * Decimal units (`64MB`) are refused with a hint: people mean 2^20 as often as 10^6.
 */
export function parseSizeBytes(value: unknown): number {
  const expected = 'a size like 64MiB, 512KiB or a byte count';
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) invalid(expected, value);
    return value;
  }
  if (typeof value !== 'string') invalid(expected, value);
  const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(value.trim());
  if (match === null) invalid(expected, value);
  const unit = match[2] === '' ? 'B' : match[2]!;
  const multiplier = SIZE_UNITS_BYTES[unit];
  if (multiplier === undefined) {
    const binary = /^[kKmMgG][bB]$/.test(unit) ? `${unit[0]!.toUpperCase()}iB` : undefined;
    invalid(
      expected,
      value,
      binary ? `${unit} is ambiguous; write ${binary} (binary units)` : 'units: B, KiB, MiB, GiB',
    );
  }
  const bytes = Number(match[1]) * multiplier;
  if (!Number.isSafeInteger(bytes)) invalid('a whole number of bytes', value);
  return bytes;
}

/** The secret's own text never appears in a message: only its length. */
function parseSecret(value: unknown): string {
  const expected = `a random string of ${CLUSTER_SECRET_BYTES_MIN} to ${CLUSTER_SECRET_BYTES_MAX} bytes (e.g. openssl rand -hex 32)`;
  if (typeof value !== 'string') invalid(expected, typeof value === 'number' ? 'a number' : value);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < CLUSTER_SECRET_BYTES_MIN || bytes > CLUSTER_SECRET_BYTES_MAX) {
    throw new Invalid(`expected ${expected}, got ${bytes} bytes`);
  }
  return value;
}

/** A secret file larger than this is not a secret file. */
const SECRET_FILE_BYTES_MAX = 4096;

/** Where a member keeps its KV store (node.ts opens it; `tandem restore` fills it). */
export function kvDir(config: TandemConfig): string {
  return join(config.dataDir, 'kv');
}

/**
 * The cluster secret of `config`: `cluster.secret`, or the contents of `cluster.secretFile`
 * (trailing whitespace trimmed). Throws an Error naming the option when neither is set or the
 * file is unusable; the message never contains the secret.
 */
export function readClusterSecret(config: TandemConfig): string {
  const { secret, secretFile } = config.cluster;
  if (secret !== null) return secret;
  if (secretFile === null) {
    throw new Error(
      'cluster.secret is required: set cluster.secret or cluster.secretFile ' +
        '(TANDEM_CLUSTER_SECRET_FILE, --cluster-secret-file) to the same random value on every ' +
        'member, e.g. the output of `openssl rand -hex 32`; every peer connection proves it holds it',
    );
  }
  let text: string;
  try {
    if (statSync(secretFile).size > SECRET_FILE_BYTES_MAX) {
      throw new Error(`larger than ${SECRET_FILE_BYTES_MAX} bytes`);
    }
    text = readFileSync(secretFile, 'utf8').trimEnd();
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new Error(`cluster.secretFile: cannot read ${secretFile} (${reason})`);
  }
  try {
    return parseSecret(text);
  } catch (error) {
    throw new Error(`cluster.secretFile: ${secretFile}: ${(error as Error).message}`);
  }
}

/** 0 = etcd's default (2 GiB); at most etcd's suggested maximum (8 GiB). */
function parseQuotaBytes(value: unknown): number {
  const bytes = parseSizeBytes(value);
  if (bytes > QUOTA_BYTES_MAX) {
    invalid("a size of at most 8GiB (etcd's suggested maximum; 0 = the 2GiB default)", value);
  }
  return bytes;
}

function parseSegmentBytes(value: unknown): number {
  const bytes = parseSizeBytes(value);
  if (bytes < CONFIG_SEGMENT_BYTES_MIN || bytes > SEGMENT_BYTES_OPTION_MAX || bytes % 8 !== 0) {
    invalid('a size between 1MiB and 1GiB, a multiple of 8 bytes', value);
  }
  return bytes;
}

const HOSTNAME_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** `host:port` or `[ipv6]:port`, port 1-65535; returns the address normalized. */
export function parseAddress(value: unknown): PeerAddress {
  const expected = 'host:port (IPv6 as [::1]:2380)';
  if (typeof value !== 'string') invalid(expected, value);
  const match = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):([^:]*)$/.exec(value);
  if (match === null)
    invalid(expected, value, value.includes(':') ? undefined : 'the port is missing');
  const [, ipv6, host, portText] = match;
  if (!/^\d{1,5}$/.test(portText!) || Number(portText) < 1 || Number(portText) > 65535) {
    invalid(`${expected} with a port between 1 and 65535`, value);
  }
  if (ipv6 !== undefined) {
    if (isIP(ipv6) !== 6) invalid(expected, value, `${ipv6} is not an IPv6 address`);
  } else if (/^[\d.]+$/.test(host!)) {
    if (isIP(host!) !== 4) invalid(expected, value, `${host} is not an IPv4 address`);
  } else if (host!.length > 253 || !host!.split('.').every((label) => HOSTNAME_LABEL.test(label))) {
    invalid(expected, value, `${host} is not a valid host name`);
  }
  return `${ipv6 !== undefined ? `[${ipv6}]` : host}:${Number(portText)}`;
}

function parseNullable<T>(parse: (value: unknown) => T): (value: unknown) => T | null {
  return (value) => (value === null ? null : parse(value));
}

// ---------------------------------------------------------------------------------------------
// The schema

/** Backups at most every second (tests), at least once a week; kept: 1 to 1000. */
const BACKUP_EVERY_MS_MIN = 1_000;
const BACKUP_EVERY_MS_MAX = 7 * 24 * 3600_000;
const BACKUP_KEEP_DEFAULT = 7;
const BACKUP_KEEP_MAX = 1000;

export const CONFIG_DEFAULTS = {
  listen: { client: '127.0.0.1:2379', peer: '127.0.0.1:2380', admin: '127.0.0.1:2381' },
  zone: 'default',
  clusterToken: 'tandem',
  ack: 'quorum',
  readDefault: 'linearizable',
  replaceAfterMs: POLICY_DEFAULTS.replaceAfterMs,
  standbyMode: 'hot',
  snapshotEveryMs: SNAPSHOT_EVERY_MS_DEFAULT,
  heartbeatMs: 100,
  electionMs: 1000,
  snapshotEntries: 10_000,
  fastFailover: true,
} as const;

const peerSchema = z.strictObject({
  name: field(required(parseName)),
  addresses: z.array(field(required(parseAddress))).superRefine((addresses, ctx) => {
    if (addresses.length === 0 || addresses.length > PEER_ADDRESSES_MAX) {
      ctx.addIssue({
        code: 'custom',
        message: `expected 1 to ${PEER_ADDRESSES_MAX} addresses, got ${addresses.length}`,
      });
    }
  }),
  role: field(withDefault<MemberRole>('voter', parseEnum(ROLES))),
  standbyMode: field(
    withDefault<StandbyMode>(CONFIG_DEFAULTS.standbyMode, parseEnum(STANDBY_MODES)),
  ),
});

const tlsClientSchema = z.strictObject({
  cert: field(required(parsePath)),
  key: field(required(parsePath)),
  ca: field(withDefault(null, parseNullable(parsePath))),
});

const tlsPeerSchema = z.strictObject({
  cert: field(required(parsePath)),
  key: field(required(parsePath)),
  ca: field(required(parsePath)),
  checkNames: field(withDefault(true, parseBool)),
});

const inputSchema = z.strictObject({
  name: field(required(parseName)),
  dataDir: field(withDefault<string | null>(null, parsePath)),
  listen: z
    .strictObject({
      client: field(withDefault(CONFIG_DEFAULTS.listen.client, parseAddress)),
      peer: field(withDefault(CONFIG_DEFAULTS.listen.peer, parseAddress)),
      admin: field(withDefault(CONFIG_DEFAULTS.listen.admin, parseAddress)),
    })
    .prefault({}),
  zone: field(withDefault(CONFIG_DEFAULTS.zone, parseName)),
  role: field(withDefault<MemberRole>('voter', parseEnum(ROLES))),
  peers: z.array(peerSchema).max(PEERS_MAX).default([]),
  cluster: z
    .strictObject({
      state: field(withDefault<ClusterState>('new', parseEnum(['new', 'existing']))),
      token: field(
        withDefault(CONFIG_DEFAULTS.clusterToken, (v) => parseText(v, CLUSTER_TOKEN_LENGTH_MAX)),
      ),
      secret: field(withDefault(null, parseNullable(parseSecret))),
      secretFile: field(withDefault(null, parseNullable(parsePath))),
    })
    .prefault({}),
  replication: z
    .strictObject({
      // null: chosen from the member count (see `defaultVoters`).
      voters: field(withDefault<number | null>(null, parseVoters)),
      ack: field(withDefault<AckPolicy>(CONFIG_DEFAULTS.ack, parseEnum(['quorum', 'all']))),
      readDefault: field(
        withDefault<ReadConsistency>(
          CONFIG_DEFAULTS.readDefault,
          parseEnum(['linearizable', 'lease', 'serializable']),
        ),
      ),
      preferLeaderZone: field(withDefault(null, parseNullable(parseName))),
    })
    .prefault({}),
  redundancy: z
    .strictObject({
      replaceAfter: field(
        withDefault(CONFIG_DEFAULTS.replaceAfterMs, parseDuration(1, REPLACE_AFTER_MS_MAX)),
      ),
      preferSameZone: field(withDefault(true, parseBool)),
      standby: z
        .strictObject({
          mode: field(
            withDefault<StandbyMode>(CONFIG_DEFAULTS.standbyMode, parseEnum(STANDBY_MODES)),
          ),
          snapshotEvery: field(
            withDefault(
              CONFIG_DEFAULTS.snapshotEveryMs,
              parseDuration(SNAPSHOT_EVERY_MS_MIN, SNAPSHOT_EVERY_MS_MAX),
            ),
          ),
        })
        .prefault({}),
    })
    .prefault({}),
  wal: z
    .strictObject({
      mirror: field(withDefault(null, parseNullable(parsePath))),
      segmentBytes: field(withDefault(SEGMENT_BYTES_DEFAULT, parseSegmentBytes)),
    })
    .prefault({}),
  quota: z
    .strictObject({
      backendBytes: field(withDefault(0, parseQuotaBytes)),
    })
    .prefault({}),
  limits: z
    .strictObject({
      leasesMax: field(withDefault(LEASES_MAX_DEFAULT, parseInteger(1, LEASES_MAX_LIMIT))),
      concurrentStreamsMax: field(
        withDefault(CONCURRENT_STREAMS_MAX_DEFAULT, parseInteger(1, CONCURRENT_STREAMS_MAX_LIMIT)),
      ),
      grpcKeepaliveMinTime: field(
        withDefault(KEEPALIVE_MIN_TIME_MS_DEFAULT, parseDuration(1, KEEPALIVE_MIN_TIME_MS_MAX)),
      ),
      grpcKeepalivePermitWithoutStream: field(
        withDefault(KEEPALIVE_PERMIT_WITHOUT_STREAM_DEFAULT, parseBool),
      ),
    })
    .prefault({}),
  raft: z
    .strictObject({
      heartbeatMs: field(
        withDefault(CONFIG_DEFAULTS.heartbeatMs, parseInteger(HEARTBEAT_MS_MIN, HEARTBEAT_MS_MAX)),
      ),
      electionMs: field(
        withDefault(
          CONFIG_DEFAULTS.electionMs,
          parseInteger(ELECTION_HEARTBEATS_MIN * HEARTBEAT_MS_MIN, ELECTION_MS_MAX),
        ),
      ),
      snapshotEntries: field(
        withDefault(
          CONFIG_DEFAULTS.snapshotEntries,
          parseInteger(SNAPSHOT_ENTRIES_MIN, SNAPSHOT_ENTRIES_MAX),
        ),
      ),
      fastFailover: field(withDefault(CONFIG_DEFAULTS.fastFailover, parseBool)),
    })
    .prefault({}),
  tls: z
    .strictObject({
      client: tlsClientSchema.optional(),
      peer: tlsPeerSchema.optional(),
      admin: tlsClientSchema.optional(),
    })
    .prefault({}),
  backup: z
    .strictObject({
      every: field(required(parseDuration(BACKUP_EVERY_MS_MIN, BACKUP_EVERY_MS_MAX))),
      keep: field(withDefault(BACKUP_KEEP_DEFAULT, parseInteger(1, BACKUP_KEEP_MAX))),
      dir: field(required(parsePath)),
    })
    .optional(),
  auth: z
    .strictObject({
      jwt: z
        .strictObject({
          signMethod: field(required(parseEnum(JWT_SIGN_METHODS))),
          privateKey: field(required(parsePath)),
          publicKey: field(withDefault(null, parseNullable(parsePath))),
          ttl: field(withDefault(JWT_TTL_MS_DEFAULT, parseDuration(1_000, JWT_TTL_MS_MAX))),
        })
        .optional(),
    })
    .prefault({}),
  testMode: z
    .strictObject({
      faultInjection: field(withDefault(false, parseBool)),
      devControls: field(withDefault(null, parseNullable(parseAddress))),
      faultsOffLoopback: field(withDefault(false, parseBool)),
    })
    .prefault({}),
});

type ParsedInput = z.output<typeof inputSchema>;

/** Without an explicit count: 3 voters when there are enough members, else the largest odd. */
function defaultVoters(members: number): number {
  const voters = Math.min(3, members);
  return voters % 2 === 1 ? voters : voters - 1;
}

/** Checks between fields; each issue is reported at the field the user should change. */
function checkRelations(input: ParsedInput, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string): void => {
    ctx.addIssue({ code: 'custom', path, message });
  };
  const { raft, peers } = input;
  if (raft.electionMs < ELECTION_HEARTBEATS_MIN * raft.heartbeatMs) {
    issue(
      ['raft', 'electionMs'],
      `must be at least ${ELECTION_HEARTBEATS_MIN} × raft.heartbeatMs (${ELECTION_HEARTBEATS_MIN * raft.heartbeatMs}), got ${raft.electionMs}: shorter, and followers call elections on ordinary jitter`,
    );
  }
  if (input.redundancy.replaceAfter <= raft.electionMs) {
    issue(
      ['redundancy', 'replaceAfter'],
      `must be longer than raft.electionMs (${raft.electionMs}ms), got ${formatMs(input.redundancy.replaceAfter)}: a voter would be replaced before a new leader could even be elected`,
    );
  }
  const members = 1 + peers.length;
  const voters = input.replication.voters;
  if (input.cluster.state === 'new' && voters !== null && voters > members) {
    issue(
      ['replication', 'voters'],
      `${voters} voters need at least ${voters} members, but the initial cluster has ${members} (this node and ${peers.length} peers)`,
    );
  }
  const founderVoters =
    (input.role === 'voter' ? 1 : 0) + peers.filter((p) => p.role === 'voter').length;
  if (input.cluster.state === 'new' && founderVoters === 0) {
    issue(['role'], 'a new cluster needs at least one voter among this node and its peers');
  }
  if (input.cluster.secret !== null && input.cluster.secretFile !== null) {
    issue(['cluster', 'secretFile'], 'set cluster.secret or cluster.secretFile, not both');
  }
  if (input.cluster.state === 'existing' && peers.length === 0) {
    issue(
      ['peers'],
      'joining an existing cluster (cluster.state: existing) needs at least one peer to contact',
    );
  }
  const admin = input.listen.admin;
  if (input.testMode.faultInjection && !input.testMode.faultsOffLoopback && !isLoopback(admin)) {
    issue(
      ['testMode', 'faultInjection'],
      `needs listen.admin on a loopback address (127.0.0.0/8, [::1] or localhost), got ${admin}: the /faults endpoint has no authentication`,
    );
  }
  checkAddresses(input, issue);
}

/** 127.0.0.0/8, ::1 or localhost: reachable from this machine only. */
export function isLoopback(address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(':'));
  return host === '[::1]' || host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function checkAddresses(
  input: ParsedInput,
  issue: (path: (string | number)[], message: string) => void,
): void {
  const owners = new Map<string, string>();
  const claim = (address: string, owner: string, path: (string | number)[]): void => {
    const previous = owners.get(address);
    if (previous !== undefined) issue(path, `${address} is already used by ${previous}`);
    else owners.set(address, owner);
  };
  for (const key of ['client', 'peer', 'admin'] as const) {
    const address = input.listen[key];
    const port = address.slice(address.lastIndexOf(':') + 1);
    // A wildcard host binds every interface, so its port clashes with any host's same port.
    const clash = (['client', 'peer', 'admin'] as const)
      .slice(0, ['client', 'peer', 'admin'].indexOf(key))
      .find((other) => {
        const otherAddress = input.listen[other];
        return (
          otherAddress.endsWith(`:${port}`) && (isWildcard(address) || isWildcard(otherAddress))
        );
      });
    if (clash !== undefined) {
      const used = `listen.${clash} (${input.listen[clash]})`;
      issue(['listen', key], `port ${port} is already used by ${used}`);
    } else {
      claim(address, `listen.${key}`, ['listen', key]);
    }
  }
  const names = new Map<string, number>([[input.name, -1]]);
  input.peers.forEach((peer, index) => {
    const previous = names.get(peer.name);
    if (previous === -1) issue(['peers', index, 'name'], `${peer.name} is this node's own name`);
    else if (previous !== undefined)
      issue(['peers', index, 'name'], `duplicate peer name (also peers[${previous}])`);
    else names.set(peer.name, index);
    peer.addresses.forEach((address, at) => {
      if (isWildcard(address)) {
        issue(
          ['peers', index, 'addresses', at],
          `${address} is a wildcard; give an address peers can dial`,
        );
      }
      claim(address, `peers[${index}] (${peer.name})`, ['peers', index, 'addresses', at]);
    });
  });
}

function isWildcard(address: string): boolean {
  return address.startsWith('0.0.0.0:') || address.startsWith('[::]:');
}

function resolveConfig(input: ParsedInput, baseDir: string): TandemConfig {
  const path = (p: string): string => resolve(baseDir, p);
  const { replication, redundancy, tls } = input;
  return {
    name: input.name,
    dataDir: path(input.dataDir ?? `data/${input.name}`),
    listen: input.listen,
    zone: input.zone,
    role: input.role,
    peers: input.peers,
    cluster: {
      ...input.cluster,
      secretFile: input.cluster.secretFile === null ? null : path(input.cluster.secretFile),
    },
    replication: {
      ...replication,
      // The founding voters by default: replicas and standbys do not count towards the factor.
      voters:
        replication.voters ??
        defaultVoters(
          Math.max(
            1,
            (input.role === 'voter' ? 1 : 0) + input.peers.filter((p) => p.role === 'voter').length,
          ),
        ),
    },
    redundancy: {
      replaceAfterMs: redundancy.replaceAfter,
      preferSameZone: redundancy.preferSameZone,
      standby: { mode: redundancy.standby.mode, snapshotEveryMs: redundancy.standby.snapshotEvery },
    },
    wal: {
      mirror: input.wal.mirror === null ? null : path(input.wal.mirror),
      segmentBytes: input.wal.segmentBytes,
    },
    quota: { backendBytes: input.quota.backendBytes || QUOTA_BYTES_DEFAULT },
    limits: {
      leasesMax: input.limits.leasesMax,
      concurrentStreamsMax: input.limits.concurrentStreamsMax,
      grpcKeepaliveMinTimeMs: input.limits.grpcKeepaliveMinTime,
      grpcKeepalivePermitWithoutStream: input.limits.grpcKeepalivePermitWithoutStream,
    },
    raft: input.raft,
    tls: {
      client: tls.client === undefined ? null : resolveServerTls(tls.client, path),
      peer:
        tls.peer === undefined
          ? null
          : {
              cert: path(tls.peer.cert),
              key: path(tls.peer.key),
              ca: path(tls.peer.ca),
              checkNames: tls.peer.checkNames,
            },
      admin: tls.admin === undefined ? null : resolveServerTls(tls.admin, path),
    },
    testMode: {
      faultInjection: input.testMode.faultInjection,
      devControls: input.testMode.devControls,
      faultsOffLoopback: input.testMode.faultsOffLoopback,
    },
    backup:
      input.backup === undefined
        ? null
        : { everyMs: input.backup.every, keep: input.backup.keep, dir: path(input.backup.dir) },
    auth: {
      jwt:
        input.auth.jwt === undefined
          ? null
          : {
              signMethod: input.auth.jwt.signMethod,
              privateKey: path(input.auth.jwt.privateKey),
              publicKey: input.auth.jwt.publicKey === null ? null : path(input.auth.jwt.publicKey),
              ttlMs: input.auth.jwt.ttl,
            },
    },
  };
}

function resolveServerTls(
  tls: { cert: string; key: string; ca: string | null },
  path: (p: string) => string,
): ClientTlsConfig {
  return { cert: path(tls.cert), key: path(tls.key), ca: tls.ca === null ? null : path(tls.ca) };
}

/**
 * The schema of one member's configuration. Relative paths resolve against `baseDir` (the config
 * file's directory). Pure: no file system access (see `loadConfig` for the TLS file checks).
 */
export function configSchema(baseDir: string) {
  assert(isAbsolute(baseDir), 'configSchema: baseDir must be absolute');
  return inputSchema
    .superRefine(checkRelations)
    .transform((input): TandemConfig => resolveConfig(input, baseDir));
}

// ---------------------------------------------------------------------------------------------
// Overrides: TANDEM_<FIELD> environment variables and --<field> flags

// The table itself lives in config-overrides.ts, free of zod, so `tandem --help` loads fast.

/**
 * `n2=127.0.0.1:12380,n2=127.0.0.2:12380,n3=127.0.0.1:22380`, etcd's --initial-cluster form:
 * a name given twice gets both addresses (redundant links), in order.
 */
export function parsePeersList(text: string): { name: string; addresses: string[] }[] {
  const peers: { name: string; addresses: string[] }[] = [];
  if (text.trim() === '') return peers;
  for (const item of text.split(',')) {
    const at = item.indexOf('=');
    if (at <= 0 || at === item.length - 1) {
      invalid('name=host:port[,name=host:port…]', text, `bad item ${JSON.stringify(item)}`);
    }
    const name = item.slice(0, at).trim();
    const address = item.slice(at + 1).trim();
    const peer = peers.find((p) => p.name === name);
    if (peer === undefined) peers.push({ name, addresses: [address] });
    else peer.addresses.push(address);
  }
  return peers;
}

/** Turns an environment or flag string into the value the schema expects; resolves paths. */
function coerce(override: ConfigOverride, value: unknown, cwd: string): unknown {
  if (typeof value !== 'string') return value; // commander may already give numbers, booleans
  const text = value.trim();
  switch (override.kind) {
    case 'int':
      return /^-?\d+$/.test(text) ? Number(text) : value;
    case 'bool':
      return text === 'true' ? true : text === 'false' ? false : value;
    case 'nullable':
      if (text === '' || text === 'null') return null;
      return override.isPath ? resolve(cwd, text) : text;
    case 'peers':
      return parsePeersList(text);
    case 'string':
      return override.isPath && text !== '' ? resolve(cwd, text) : value;
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    // A section the file left out (or wrote as a scalar, which the schema reports) is replaced.
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys.at(-1)!] = value;
}

/** Levenshtein distance, for "did you mean" on unknown fields and variables. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(
        row[j]! + 1,
        next[j - 1]! + 1,
        row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    row = next;
  }
  return row[b.length]!;
}

function suggest(word: string, candidates: Iterable<string>): string {
  let best: string | null = null;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best === null ? '' : ` (did you mean ${best}?)`;
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadConfigOptions {
  /** The YAML file; without one, the config comes from the environment, flags and defaults. */
  readonly file?: string;
  /**
   * Parsed command-line options (commander's `opts()`): keys are flag names (`listen-client`)
   * or their camelCase (`listenClient`); undefined values are ignored. Keys that name no config
   * field are not ours (e.g. `config`) and are ignored: commander already rejects unknown flags.
   */
  readonly flags?: Readonly<Record<string, unknown>>;
  /** Usually `process.env`. Unknown `TANDEM_*` names are errors (typos are caught). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Relative paths from the environment and flags; defaults to `process.cwd()`. */
  readonly cwd?: string;
  /** Check that TLS files are readable (default true). */
  readonly checkFiles?: boolean;
}

function camelCase(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Reads, merges, validates. Throws `ConfigError` listing every problem found. */
export function loadConfig(options: LoadConfigOptions): TandemConfig {
  const cwd = options.cwd ?? process.cwd();
  const file = options.file;
  const raw = file === undefined ? {} : readConfigFile(file);
  const baseDir = file === undefined ? resolve(cwd) : dirname(resolve(cwd, file));
  const fileSource = file ?? null;

  // Each overridden path remembers its source so that errors point at the right place.
  const sources = new Map<string, string>();
  const issues: ConfigIssue[] = [];
  const apply = (override: ConfigOverride, value: unknown, source: string): void => {
    try {
      setPath(raw, override.path, coerce(override, value, cwd));
      sources.set(override.path, source);
    } catch (error) {
      if (!(error instanceof Invalid)) throw error;
      issues.push({ source, path: override.path, message: error.message });
    }
  };

  const env = options.env ?? {};
  const byEnv = new Map(CONFIG_OVERRIDES.map((o) => [o.env, o]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('TANDEM_') || value === undefined || ENV_NOT_CONFIG.has(name)) continue;
    const override = byEnv.get(name);
    if (override === undefined) {
      issues.push({
        source: `environment ${name}`,
        path: '',
        message: `unknown variable${suggest(name, byEnv.keys())}`,
      });
    } else {
      apply(override, value, `environment ${name}`);
    }
  }
  const flags = options.flags ?? {};
  for (const override of CONFIG_OVERRIDES) {
    const value = flags[override.flag] ?? flags[camelCase(override.flag)];
    if (value !== undefined) apply(override, value, `flag --${override.flag}`);
  }

  const result = configSchema(baseDir).safeParse(raw, { reportInput: true });
  if (!result.success) {
    for (const zodIssue of result.error.issues) {
      issues.push(...toConfigIssues(zodIssue, sources, fileSource));
    }
  }
  if (issues.length > 0) throw new ConfigError('CONFIG_INVALID', issues);
  assert(result.success, 'no issues means the schema accepted the config');
  const config = result.data;
  const later = checkPaths(config, sources, fileSource, options.checkFiles ?? true);
  if (later.length > 0) throw new ConfigError('CONFIG_INVALID', later);
  return config;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > CONFIG_FILE_BYTES_MAX) {
      throw new ConfigError('CONFIG_READ', [
        {
          source: file,
          path: '',
          message: `file is ${size} bytes; the limit is ${CONFIG_FILE_BYTES_MAX}`,
        },
      ]);
    }
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    const reason = (cause as NodeJS.ErrnoException).code ?? String(cause);
    throw new ConfigError(
      'CONFIG_READ',
      [{ source: file, path: '', message: `cannot read the file (${reason})` }],
      {
        cause,
      },
    );
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      'CONFIG_SYNTAX',
      doc.errors.map((e) => ({
        source: file,
        path: '',
        message: `invalid YAML: ${e.message.split('\n')[0]}`,
      })),
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias without its anchor, or too many aliases, surfaces only here (found by fuzzing).
    throw new ConfigError('CONFIG_SYNTAX', [
      { source: file, path: '', message: `invalid YAML: ${(error as Error).message}` },
    ]);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('CONFIG_INVALID', [
      {
        source: file,
        path: '',
        message: `expected a mapping of fields at the top level, got ${describe(value)}`,
      },
    ]);
  }
  return value as Record<string, unknown>;
}

function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const key of path) {
    if (typeof key === 'number') text += `[${key}]`;
    else text += text === '' ? String(key) : `.${String(key)}`;
  }
  return text;
}

function sourceOf(
  path: readonly PropertyKey[],
  sources: Map<string, string>,
  file: string | null,
): string | null {
  // Overrides replace whole leaves (or the whole peers list): the longest overridden prefix wins.
  for (let length = path.length; length > 0; length--) {
    const prefix = path.slice(0, length);
    if (!prefix.every((key) => typeof key === 'string')) continue;
    const source = sources.get(prefix.join('.'));
    if (source !== undefined) return source;
  }
  return file;
}

function toConfigIssues(
  issue: z.core.$ZodIssue,
  sources: Map<string, string>,
  file: string | null,
): ConfigIssue[] {
  const path = issue.path;
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeys(path);
    return issue.keys.map((key) => ({
      source: file,
      path: formatPath([...path, key]),
      message: `unknown field${suggest(key, known)}`,
    }));
  }
  let message = issue.message;
  if (issue.code === 'invalid_type') {
    const expected =
      issue.expected === 'object'
        ? 'a mapping'
        : issue.expected === 'array'
          ? 'a list'
          : issue.expected;
    message =
      issue.input === undefined ? MISSING : `expected ${expected}, got ${describe(issue.input)}`;
  } else if (issue.code === 'too_big' && issue.origin === 'array') {
    message = `expected at most ${String(issue.maximum)} entries`;
  }
  const source = sourceOf(path, sources, file);
  if (message === MISSING && path.length === 1 && path[0] === 'name') {
    message += ' (set name in the config file, TANDEM_NAME or --name)';
  }
  return [{ source, path: formatPath(path), message }];
}

/** The field names of the object schema at `path`, for "did you mean". */
function knownKeys(path: readonly PropertyKey[]): string[] {
  let schema: z.core.$ZodType = inputSchema;
  for (const key of [...path, null]) {
    // Unwrap default/prefault/optional/pipe wrappers down to the object or array.
    for (;;) {
      const def = schema._zod.def as unknown as Record<string, unknown>;
      if (def.innerType !== undefined) schema = def.innerType as z.core.$ZodType;
      else if (def.type === 'pipe') schema = def.in as z.core.$ZodType;
      else break;
    }
    if (key === null) break;
    const def = schema._zod.def as unknown as Record<string, unknown>;
    if (def.type === 'array') schema = def.element as z.core.$ZodType;
    else if (def.type === 'object') {
      const next = (def.shape as Record<string, z.core.$ZodType>)[String(key)];
      if (next === undefined) return [];
      schema = next;
    } else return [];
  }
  const def = schema._zod.def as unknown as Record<string, unknown>;
  return def.type === 'object' ? Object.keys(def.shape as object) : [];
}

/** Checks that need the resolved paths (and the file system, when `checkFiles`). */
function checkPaths(
  config: TandemConfig,
  sources: Map<string, string>,
  file: string | null,
  checkFiles: boolean,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: string, message: string): void => {
    issues.push({ source: sources.get(path) ?? file, path, message });
  };
  const mirror = config.wal.mirror;
  if (mirror !== null) {
    const inside = relative(config.dataDir, mirror);
    if (inside === '' || (!inside.startsWith('..') && !isAbsolute(inside))) {
      add(
        'wal.mirror',
        `${mirror} is inside dataDir (${config.dataDir}); a mirror must live elsewhere, ideally on another disk`,
      );
    }
  }
  if (!checkFiles) return issues;
  const files: [string, string | null | undefined][] = [
    ['tls.client.cert', config.tls.client?.cert],
    ['tls.client.key', config.tls.client?.key],
    ['tls.client.ca', config.tls.client?.ca],
    ['tls.peer.cert', config.tls.peer?.cert],
    ['tls.peer.key', config.tls.peer?.key],
    ['tls.peer.ca', config.tls.peer?.ca],
    ['tls.admin.cert', config.tls.admin?.cert],
    ['tls.admin.key', config.tls.admin?.key],
    ['tls.admin.ca', config.tls.admin?.ca],
    ['cluster.secretFile', config.cluster.secretFile],
  ];
  for (const [path, target] of files) {
    if (target === null || target === undefined) continue;
    try {
      accessSync(target, fsConstants.R_OK);
    } catch (error) {
      add(path, `cannot read ${target} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  return issues;
}
