/**
 * The member registry: who is in the cluster, with their names and addresses. Replicated state:
 * it changes only when a log entry is applied (a membership change, whose context carries the
 * member's attributes, or a member's published attributes), so every member agrees on it.
 *
 * Pure: no I/O. The member (src/server) applies entries to it and reconfigures the transport from
 * it. Roles beyond etcd's voter/learner (replica, standby) arrive with the redundancy policies.
 */
import { pack, unpack } from 'msgpackr';
import type { ConfState, NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { TandemError } from '../util/errors.js';

export const MEMBERS_MAX = 64;
export const NAME_BYTES_MAX = 256;
export const URLS_MAX = 8;

export interface MemberInfo {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

/** What a membership change's context carries (raft keeps it opaque). */
export interface MemberAttributes {
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
}

export type RegistryErrorCode = 'BAD_MEMBER_ATTRIBUTES';
export class RegistryError extends TandemError<RegistryErrorCode> {}

export function encodeAttributes(a: MemberAttributes): Uint8Array {
  checkAttributes(a);
  return pack([a.name, a.peerUrls, a.clientUrls]);
}

export function decodeAttributes(bytes: Uint8Array): MemberAttributes | null {
  if (bytes.length === 0) return null;
  let v: unknown;
  try {
    v = unpack(bytes);
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== 3) return null;
  const [name, peerUrls, clientUrls] = v as unknown[];
  if (typeof name !== 'string' || !isStrings(peerUrls) || !isStrings(clientUrls)) return null;
  return { name, peerUrls, clientUrls };
}

function isStrings(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

export function checkAttributes(a: MemberAttributes): void {
  if (a.name.length > NAME_BYTES_MAX) {
    throw new RegistryError('BAD_MEMBER_ATTRIBUTES', `member name longer than ${NAME_BYTES_MAX}`);
  }
  if (a.peerUrls.length > URLS_MAX || a.clientUrls.length > URLS_MAX) {
    throw new RegistryError('BAD_MEMBER_ATTRIBUTES', `more than ${URLS_MAX} URLs for a member`);
  }
}

export class MemberRegistry {
  private readonly members = new Map<NodeId, MemberInfo>();

  /** The founding members of a new cluster, all voters. */
  static bootstrap(founders: readonly (MemberAttributes & { id: NodeId })[]): MemberRegistry {
    const r = new MemberRegistry();
    for (const f of founders) {
      assert(!r.members.has(f.id), `duplicate founding member id ${f.id}`);
      r.members.set(f.id, { ...f, isLearner: false });
    }
    return r;
  }

  get(id: NodeId): MemberInfo | undefined {
    return this.members.get(id);
  }

  list(): MemberInfo[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  get size(): number {
    return this.members.size;
  }

  findByPeerUrl(url: string): MemberInfo | undefined {
    for (const m of this.members.values()) if (m.peerUrls.includes(url)) return m;
    return undefined;
  }

  /**
   * Brings the registry in line with the configuration a membership change produced: members
   * in the configuration are present with the right learner flag (attributes from the change's
   * context when it carries them), members no longer in it are removed.
   */
  applyConfState(
    confState: ConfState,
    changed: NodeId | null,
    attrs: MemberAttributes | null,
  ): void {
    const voters = new Set([...confState.voters, ...confState.votersOutgoing]);
    const learners = new Set([...confState.learners, ...confState.learnersNext]);
    for (const id of [...this.members.keys()]) {
      if (!voters.has(id) && !learners.has(id)) this.members.delete(id);
    }
    for (const id of [...voters, ...learners]) {
      const isLearner = !voters.has(id);
      const known = this.members.get(id);
      const fresh = id === changed && attrs !== null ? attrs : null;
      this.members.set(id, {
        id,
        name: fresh?.name || known?.name || '',
        peerUrls: fresh?.peerUrls ?? known?.peerUrls ?? [],
        clientUrls: fresh?.clientUrls.length ? fresh.clientUrls : (known?.clientUrls ?? []),
        isLearner,
      });
    }
    assert(this.members.size <= MEMBERS_MAX * 2, 'registry grew past its limit');
  }

  /** A member publishes its name and client URLs (etcd's publish), or updates its peer URLs. */
  updateAttributes(id: NodeId, patch: Partial<MemberAttributes>): boolean {
    const m = this.members.get(id);
    if (m === undefined) return false;
    this.members.set(id, {
      ...m,
      ...(patch.name === undefined ? {} : { name: patch.name }),
      ...(patch.peerUrls === undefined ? {} : { peerUrls: patch.peerUrls }),
      ...(patch.clientUrls === undefined ? {} : { clientUrls: patch.clientUrls }),
    });
    return true;
  }

  toSnapshot(): unknown {
    return this.list().map((m) => [m.id, m.name, m.peerUrls, m.clientUrls, m.isLearner]);
  }

  static fromSnapshot(data: unknown): MemberRegistry {
    const r = new MemberRegistry();
    assert(Array.isArray(data), 'registry snapshot is not a list');
    for (const row of data as unknown[]) {
      assert(Array.isArray(row) && row.length === 5, 'registry snapshot row');
      const [id, name, peerUrls, clientUrls, isLearner] = row as [
        number,
        string,
        string[],
        string[],
        boolean,
      ];
      r.members.set(id, { id, name, peerUrls, clientUrls, isLearner });
    }
    return r;
  }
}
