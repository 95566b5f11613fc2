/**
 * A call's metadata: the request's custom headers, read on demand from the raw header list Node
 * hands the 'stream' event (name, value, name, value, ...), so repeated keys stay separate
 * values instead of being joined by ", ". Nothing is copied or decoded until a handler asks.
 */

export type MetadataValue = string | Buffer;

/** What handlers read; grpc-js's Metadata has the same shape, so tests may pass one. */
export interface Metadata {
  /** Every value of `key` (lower case), in order; empty when absent or reserved. */
  get(key: string): MetadataValue[];
}

/** Headers of the protocol itself, never metadata (grpc-go's isReservedHeader). */
const RESERVED = new Set([
  'content-type',
  'user-agent',
  'te',
  'grpc-message-type',
  'grpc-encoding',
  'grpc-accept-encoding',
  'grpc-message',
  'grpc-status',
  'grpc-timeout',
]);

export class RawHeaderMetadata implements Metadata {
  constructor(private readonly raw: readonly string[]) {}

  get(key: string): MetadataValue[] {
    const name = key.toLowerCase();
    if (name.startsWith(':') || RESERVED.has(name)) return [];
    const binary = name.endsWith('-bin');
    const values: MetadataValue[] = [];
    for (let i = 0; i + 1 < this.raw.length; i += 2) {
      if (this.raw[i] !== name) continue;
      const value = this.raw[i + 1]!;
      if (!binary) {
        values.push(value);
        continue;
      }
      // The spec lets binary values be joined with ","; base64 (padded or not) has no comma.
      for (const part of value.split(',')) values.push(Buffer.from(part.trim(), 'base64'));
    }
    return values;
  }
}

export const EMPTY_METADATA: Metadata = { get: () => [] };
