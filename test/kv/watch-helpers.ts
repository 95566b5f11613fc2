/** Shared helpers for the watch tests: draining a stream and printing responses readably. */
import { EventType, type KvEvent } from '../../src/kv/types.js';
import type { WatchResponse } from '../../src/kv/watch/response.js';
import type { WatchStream } from '../../src/kv/watch/stream.js';
import { dec } from './watch-fake-store.js';

export function drain(stream: WatchStream, max = Number.POSITIVE_INFINITY): WatchResponse[] {
  const out: WatchResponse[] = [];
  while (out.length < max) {
    const response = stream.next();
    if (response === undefined) break;
    out.push(response);
  }
  return out;
}

export function showEvent(event: KvEvent): string {
  const kind = event.type === EventType.Put ? 'put' : 'del';
  const value = event.type === EventType.Put ? `=${dec(event.kv.value)}` : '';
  const prev = event.prevKv === null ? '' : ` (prev ${dec(event.prevKv.value)})`;
  return `${kind} ${dec(event.kv.key)}${value} @${event.kv.modRevision}${prev}`;
}

/** One line per response: "w<id> h<header> <flags> [events]". */
export function show(response: WatchResponse): string {
  const flags = [
    response.created ? 'created' : '',
    response.canceled ? `canceled${response.cancelReason ? `(${response.cancelReason})` : ''}` : '',
    response.compactRevision ? `compact=${response.compactRevision}` : '',
    response.fragment ? 'fragment' : '',
    response.events.length === 0 && !response.created && !response.canceled ? 'progress' : '',
  ].filter((flag) => flag !== '');
  const events = response.events.map(showEvent);
  return [`w${response.watchId}`, `h${response.headerRevision}`, ...flags, ...events].join(' | ');
}

export function showAll(stream: WatchStream): string[] {
  return drain(stream).map(show);
}

/** The events of one watcher, in delivery order. */
export function eventsOf(responses: readonly WatchResponse[], watchId: number): KvEvent[] {
  return responses.filter((r) => r.watchId === watchId).flatMap((r) => r.events);
}
