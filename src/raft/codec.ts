/**
 * Encoding of ConfChange entries' data (msgpackr, compact arrays):
 *   [transition, [type, nodeId, type, nodeId, ...], context]
 * An empty byte string decodes as "leave the joint configuration", as etcd's nil ConfChangeV2.
 */
import { Packr } from 'msgpackr';
import { RaftError } from './errors.js';
import type { ConfChange, ConfChangeSingle } from './types.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const EMPTY_BYTES = new Uint8Array(0);

export const LEAVE_JOINT_CONF_CHANGE: ConfChange = Object.freeze({
  transition: 0,
  changes: Object.freeze([]) as readonly ConfChangeSingle[],
  context: EMPTY_BYTES,
});

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const flat: number[] = [];
  for (const change of cc.changes) flat.push(change.type, change.nodeId);
  return packr.pack([cc.transition, flat, cc.context]);
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length === 0) return LEAVE_JOINT_CONF_CHANGE;
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (cause) {
    throw new RaftError('CORRUPT_CONF_CHANGE', `undecodable ConfChange: ${String(cause)}`);
  }
  if (!Array.isArray(raw) || raw.length !== 3) corrupt('not a 3-element array');
  const [transition, flat, context] = raw as [unknown, unknown, unknown];
  if (transition !== 0 && transition !== 1 && transition !== 2) corrupt('bad transition');
  if (!Array.isArray(flat) || flat.length % 2 !== 0) corrupt('bad changes');
  if (!(context instanceof Uint8Array)) corrupt('bad context');
  const changes: ConfChangeSingle[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const type = flat[i] as unknown;
    const nodeId = flat[i + 1] as unknown;
    if (type !== 0 && type !== 1 && type !== 2) corrupt('bad change type');
    if (typeof nodeId !== 'number' || !Number.isSafeInteger(nodeId) || nodeId < 0) {
      corrupt('bad node id');
    }
    changes.push({ type, nodeId });
  }
  return { transition, changes, context };
}

function corrupt(why: string): never {
  throw new RaftError('CORRUPT_CONF_CHANGE', `corrupt ConfChange: ${why}`);
}
