import { assert } from '../../util/assert.js';
import type { KeyValue, KvEvent } from '../types.js';

/** etcd's WatchResponse (minus the cluster/member/term header fields the API edge adds). */
export interface WatchResponse {
  /** The watcher's id; WATCH_ID_NONE (-1) for stream-wide progress and failed creates. */
  readonly watchId: number;
  /** The store revision this response reflects (etcd's header.revision). */
  readonly headerRevision: number;
  readonly events: readonly KvEvent[];
  readonly created: boolean;
  readonly canceled: boolean;
  readonly cancelReason: string;
  /** Non-zero when the watcher was cancelled because its history is compacted. */
  readonly compactRevision: number;
  /** True on every piece of a fragmented response except the last. */
  readonly fragment: boolean;
}

/** Protobuf framing of a KeyValue beyond its key and value: tags, lengths, four varints. */
const KEY_VALUE_OVERHEAD_BYTES = 48;
/** Protobuf framing of an Event beyond its KeyValues. */
const EVENT_OVERHEAD_BYTES = 8;
/** Header and scalar fields of a WatchResponse. */
export const RESPONSE_OVERHEAD_BYTES = 64;

function keyValueBytes(kv: KeyValue): number {
  return kv.key.byteLength + kv.value.byteLength + KEY_VALUE_OVERHEAD_BYTES;
}

/** An upper-leaning estimate of the event's protobuf size; cheap, no encoding. */
export function eventBytes(event: KvEvent): number {
  const prev = event.prevKv === null ? 0 : keyValueBytes(event.prevKv);
  return EVENT_OVERHEAD_BYTES + keyValueBytes(event.kv) + prev;
}

export function responseBytes(events: readonly KvEvent[]): number {
  let bytes = RESPONSE_OVERHEAD_BYTES;
  for (const event of events) bytes += eventBytes(event);
  return bytes;
}

/** A control response's fields; the header revision defaults to the store's current one. */
export type ControlFields = Partial<WatchResponse> & Pick<WatchResponse, 'watchId'>;

export function controlResponse(
  fields: Partial<WatchResponse> & Pick<WatchResponse, 'watchId' | 'headerRevision'>,
): WatchResponse {
  return {
    events: [],
    created: false,
    canceled: false,
    cancelReason: '',
    compactRevision: 0,
    fragment: false,
    ...fields,
  };
}

export function eventsResponse(
  watchId: number,
  headerRevision: number,
  events: readonly KvEvent[],
): WatchResponse {
  assert(events.length > 0, 'an events response carries events');
  return controlResponse({ watchId, headerRevision, events });
}

/**
 * Splits `events` (in revision order) into groups of whole revisions, each under
 * `responseBytesMax` unless a single revision alone is larger: a revision is never split here,
 * only fragmented on the way out when the watcher asked for fragments.
 */
export function groupByRevision(events: readonly KvEvent[], responseBytesMax: number): KvEvent[][] {
  const groups: KvEvent[][] = [];
  let group: KvEvent[] = [];
  let groupBytes = RESPONSE_OVERHEAD_BYTES;
  for (let i = 0; i < events.length; ) {
    const revision = events[i]!.kv.modRevision;
    let end = i;
    let revisionBytes = 0;
    while (end < events.length && events[end]!.kv.modRevision === revision) {
      revisionBytes += eventBytes(events[end]!);
      end += 1;
    }
    if (group.length > 0 && groupBytes + revisionBytes > responseBytesMax) {
      groups.push(group);
      group = [];
      groupBytes = RESPONSE_OVERHEAD_BYTES;
    }
    for (let j = i; j < end; j++) group.push(events[j]!);
    groupBytes += revisionBytes;
    i = end;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * etcd's sendFragments: a response at or over `responseBytesMax` with two or more events becomes
 * pieces that each stay under it (a piece holds at least one event), all flagged `fragment`
 * except the last. The client reassembles them.
 */
export function fragmentResponse(
  response: WatchResponse,
  responseBytesMax: number,
): WatchResponse[] {
  const events = response.events;
  if (events.length < 2 || responseBytes(events) < responseBytesMax) return [response];
  const pieces: WatchResponse[] = [];
  let start = 0;
  while (start < events.length) {
    let end = start + 1;
    let bytes = RESPONSE_OVERHEAD_BYTES + eventBytes(events[start]!);
    while (end < events.length && bytes + eventBytes(events[end]!) < responseBytesMax) {
      bytes += eventBytes(events[end]!);
      end += 1;
    }
    pieces.push({ ...response, events: events.slice(start, end), fragment: end < events.length });
    start = end;
  }
  assert(pieces.length >= 2 && !pieces.at(-1)!.fragment, 'fragments end with a last piece');
  return pieces;
}
