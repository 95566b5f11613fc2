/**
 * Pending ReadIndex requests on the leader (etcd-io/raft read_only.go; Raft thesis §6.4).
 * Each request records the commit index when it arrived; it is answered once a quorum has
 * acknowledged a heartbeat carrying its context, which proves the leader was still the leader
 * after the request arrived. Requests are answered in arrival order.
 */
import type { Message, NodeId } from './types.js';

export interface ReadIndexStatus {
  readonly request: Message;
  readonly index: number;
  readonly acks: Map<NodeId, boolean>;
}

/** A string key for a context: latin1 is a 1:1 byte-to-char mapping. */
export function contextKey(context: Uint8Array): string {
  return Buffer.from(context.buffer, context.byteOffset, context.byteLength).toString('latin1');
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private readonly queue: string[] = [];

  get size(): number {
    return this.queue.length;
  }

  /** Records a read of commit index `index`; a duplicate context is ignored. */
  addRequest(index: number, request: Message): void {
    const key = contextKey(request.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { request, index, acks: new Map() });
    this.queue.push(key);
  }

  /** Records `id`'s heartbeat ack for `context`; returns the ack set, or undefined if unknown. */
  recvAck(id: NodeId, context: Uint8Array): Map<NodeId, boolean> | undefined {
    const status = this.pending.get(contextKey(context));
    if (status === undefined) return undefined;
    status.acks.set(id, true);
    return status.acks;
  }

  /**
   * Dequeues the request with `context` and every request queued before it: a quorum acked a
   * heartbeat sent after all of them arrived, so all can be answered.
   */
  advance(context: Uint8Array): ReadIndexStatus[] {
    const key = contextKey(context);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const done = this.queue.splice(0, at + 1);
    const out: ReadIndexStatus[] = [];
    for (const k of done) {
      out.push(this.pending.get(k)!);
      this.pending.delete(k);
    }
    return out;
  }

  /** The context of the newest pending request: heartbeats carry it to confirm all of them. */
  lastPendingContext(): Uint8Array | undefined {
    if (this.queue.length === 0) return undefined;
    return this.pending.get(this.queue[this.queue.length - 1]!)!.request.context;
  }

  clear(): void {
    this.pending.clear();
    this.queue.length = 0;
  }
}
