/**
 * Member and cluster ids: 52 bits of SHA-256 (ids travel as JavaScript numbers, so they must be
 * safe integers), never 0 (raft's NONE). Founders compute theirs from the cluster token and
 * their names, so every founder derives the same ids; a member added later gets one from its
 * peer URLs and the time of the request (etcd derives them the same way).
 */
import { createHash } from 'node:crypto';
import type { NodeId } from '../raft/types.js';

/** 52 bits of SHA-256 over `parts` (each terminated by NUL), never 0. */
export function id52(...parts: string[]): number {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  const d = h.digest();
  const id = (d.readUInt32BE(0) & 0xfffff) * 2 ** 32 + d.readUInt32BE(4);
  return id === 0 ? 1 : id;
}

/** A founder's id: the same on every founder that shares the token. */
export function memberIdOf(token: string, name: string): NodeId {
  return id52('member', token, name);
}

/** The cluster's id: the token and the founders' ids, in any order. */
export function clusterIdOf(token: string, founderIds: readonly number[]): number {
  return id52('cluster', token, ...[...founderIds].sort((a, b) => a - b).map(String));
}

/** A member added by MemberAdd: its peer URLs and the time of the request. */
export function addedMemberId(peerUrls: readonly string[], nowMs: number): NodeId {
  return id52('added', ...peerUrls, String(nowMs));
}
