/**
 * `:authority` values Node's HTTP/2 server refuses and etcd's clients send.
 *
 * etcd 3.4's Go client dials an endpoint given as a URL (`http://127.0.0.1:2379`, as
 * `etcdctl --cluster` takes them from the member list) with that URL as `:authority`. nghttp2,
 * under node:http2, resets such a stream (PROTOCOL_ERROR: "/" is no authority character) and Node
 * has no option to turn the check off; Go's server (etcd) accepts it. So the client's bytes of a
 * connection pass through `AuthorityRewriter` before nghttp2 sees them: in each header block,
 * a literal `:authority` (or `host`) whose value nghttp2 would refuse gets a value of the same
 * length with each refused character replaced by "_" (`http:__127.0.0.1:2379`), so both HPACK
 * dynamic tables (the client's encoder's and nghttp2's decoder's) keep the same entry sizes and
 * indices. Nothing on the server reads the authority; only its acceptance matters.
 *
 * Header blocks are scanned without a dynamic table: a field that names its header by a dynamic
 * index is left alone (grpc-go names `:authority` by its static index, 1).
 */
import { Duplex } from 'node:stream';
import { assert } from '../../util/assert.js';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

const FRAME_HEADER_BYTES = 9;
const TYPE_SETTINGS = 0x4;
const FLAG_ACK = 0x1;

/** A SETTINGS frame of `packed` settings (http2.getPackedSettings). */
export function settingsFrame(packed: Buffer): Buffer {
  const header = Buffer.from([0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0]);
  header.writeUIntBE(packed.length, 0, 3);
  return Buffer.concat([header, packed]);
}

function isSettingsAck(frame: Buffer): boolean {
  return frame[3] === TYPE_SETTINGS && (frame[4]! & FLAG_ACK) !== 0;
}
/** SETTINGS_MAX_FRAME_SIZE's default; this server never raises it, so no client frame is larger. */
const FRAME_PAYLOAD_BYTES_MAX = 16_384;
/** A header block (HEADERS and its CONTINUATIONs) larger than this is passed on untouched. */
const HEADER_BLOCK_BYTES_MAX = 64 * 1024;
const TYPE_HEADERS = 0x1;
const TYPE_CONTINUATION = 0x9;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/**
 * HPACK's Huffman code (RFC 7541 Appendix B) is canonical: each symbol's code follows from the
 * code lengths alone, assigned in order of (length, symbol). Lengths of symbols 0–255, then EOS.
 */
// biome-ignore format: sixteen symbols a row, as RFC 7541 Appendix B lists them
const HUFFMAN_CODE_BITS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30, // EOS
] as const;
const HUFFMAN_EOS = 256;
assert(HUFFMAN_CODE_BITS.length === HUFFMAN_EOS + 1);

/** Symbol by (code, length): key code * 32 + length. */
const HUFFMAN_DECODE = ((): Map<number, number> => {
  const symbols = HUFFMAN_CODE_BITS.map((bits, symbol) => ({ bits, symbol })).sort(
    (a, b) => a.bits - b.bits || a.symbol - b.symbol,
  );
  const table = new Map<number, number>();
  let code = 0;
  let bits = symbols[0]!.bits;
  for (const s of symbols) {
    code *= 2 ** (s.bits - bits);
    bits = s.bits;
    table.set(code * 32 + bits, s.symbol);
    code += 1;
  }
  // EOS is the all-ones 30-bit code (RFC 7541 Appendix B): the canonical construction holds.
  assert(table.get((2 ** 30 - 1) * 32 + 30) === HUFFMAN_EOS, 'HPACK Huffman table');
  return table;
})();

/** Huffman-decoded bytes, or null for an invalid encoding (EOS inside, bad padding). */
export function huffmanDecode(bytes: Uint8Array): Buffer | null {
  const out: number[] = [];
  let code = 0;
  let bits = 0;
  for (const byte of bytes) {
    for (let i = 7; i >= 0; i--) {
      code = code * 2 + ((byte >> i) & 1);
      bits += 1;
      const symbol = bits >= 5 ? HUFFMAN_DECODE.get(code * 32 + bits) : undefined;
      if (symbol === HUFFMAN_EOS) return null;
      if (symbol !== undefined) {
        out.push(symbol);
        code = 0;
        bits = 0;
      } else if (bits > 30) return null;
    }
  }
  // Padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (bits > 7 || code !== 2 ** bits - 1) return null;
  return Buffer.from(out);
}

/** nghttp2's check_authority: RFC 3986's authority characters. */
const AUTHORITY_CHARS = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@[]%") {
  AUTHORITY_CHARS[c.charCodeAt(0)] = 1;
}
const AUTHORITY_REPLACEMENT = '_'.charCodeAt(0);

/** `value` with each character nghttp2 refuses in an authority replaced (same length), or null. */
export function acceptableAuthority(value: Uint8Array): Buffer | null {
  let fixed: Buffer | null = null;
  for (let i = 0; i < value.length; i++) {
    if (AUTHORITY_CHARS[value[i]!] === 1) continue;
    fixed ??= Buffer.from(value);
    fixed[i] = AUTHORITY_REPLACEMENT;
  }
  return fixed;
}

/** An HPACK integer (RFC 7541 §5.1) at `at` with an N-bit prefix; null when truncated. */
function readInt(block: Uint8Array, at: number, prefixBits: number): [number, number] | null {
  if (at >= block.length) return null;
  const max = 2 ** prefixBits - 1;
  let value = block[at]! & max;
  let i = at + 1;
  if (value < max) return [value, i];
  for (let shift = 0; shift <= 28; shift += 7) {
    if (i >= block.length) return null;
    const b = block[i++]!;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [value, i];
  }
  return null; // longer than any length or index this server accepts
}

function writeInt(value: number, prefixBits: number, firstByteHigh: number): Buffer {
  const max = 2 ** prefixBits - 1;
  if (value < max) return Buffer.from([firstByteHigh | value]);
  const out = [firstByteHigh | max];
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return Buffer.from(out);
}

interface HpackString {
  readonly huffman: boolean;
  readonly raw: Uint8Array;
  readonly end: number;
}

function readString(block: Uint8Array, at: number): HpackString | null {
  const len = readInt(block, at, 7);
  if (len === null || len[1] + len[0] > block.length) return null;
  return {
    huffman: (block[at]! & 0x80) !== 0,
    raw: block.subarray(len[1], len[1] + len[0]),
    end: len[1] + len[0],
  };
}

/** Static table indices (RFC 7541 Appendix A) of the fields nghttp2 checks as authorities. */
const STATIC_AUTHORITY = 1;
const STATIC_HOST = 38;

/**
 * The header block with every literal authority nghttp2 would refuse replaced, or null when it
 * needs no change (or cannot be parsed: nghttp2 then reports it as it would have).
 */
export function rewriteHeaderBlock(block: Uint8Array): Buffer | null {
  const parts: Uint8Array[] = [];
  let copiedTo = 0;
  let at = 0;
  while (at < block.length) {
    const first = block[at]!;
    if (first & 0x80) {
      const index = readInt(block, at, 7); // indexed field
      if (index === null) return null;
      at = index[1];
      continue;
    }
    if ((first & 0xe0) === 0x20) {
      const size = readInt(block, at, 5); // dynamic table size update
      if (size === null) return null;
      at = size[1];
      continue;
    }
    const prefixBits = first & 0x40 ? 6 : 4; // with incremental indexing, else without/never
    const nameIndex = readInt(block, at, prefixBits);
    if (nameIndex === null) return null;
    let isAuthority = nameIndex[0] === STATIC_AUTHORITY || nameIndex[0] === STATIC_HOST;
    let valueAt = nameIndex[1];
    if (nameIndex[0] === 0) {
      const name = readString(block, valueAt);
      if (name === null) return null;
      const text = name.huffman ? huffmanDecode(name.raw) : Buffer.from(name.raw);
      isAuthority = text !== null && (text.equals(AUTHORITY_NAME) || text.equals(HOST_NAME));
      valueAt = name.end;
    }
    const value = readString(block, valueAt);
    if (value === null) return null;
    if (isAuthority) {
      const decoded = value.huffman ? huffmanDecode(value.raw) : value.raw;
      const fixed = decoded === null ? null : acceptableAuthority(decoded);
      if (fixed !== null) {
        parts.push(block.subarray(copiedTo, valueAt), writeInt(fixed.length, 7, 0), fixed);
        copiedTo = value.end;
      }
    }
    at = value.end;
  }
  if (copiedTo === 0) return null;
  parts.push(block.subarray(copiedTo));
  return Buffer.concat(parts);
}
const AUTHORITY_NAME = Buffer.from(':authority');
const HOST_NAME = Buffer.from('host');

/** HEADERS (+ CONTINUATION) frames carrying `block`, each at most the default frame size. */
function headerFrames(streamId: number, flags: number, priority: Buffer, block: Buffer) {
  const frames: Uint8Array[] = [];
  let at = 0;
  let first = true;
  do {
    const prefix = first ? priority : Buffer.alloc(0);
    const take = Math.min(block.length - at, FRAME_PAYLOAD_BYTES_MAX - prefix.length);
    const last = at + take === block.length;
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header.writeUIntBE(prefix.length + take, 0, 3);
    header[3] = first ? TYPE_HEADERS : TYPE_CONTINUATION;
    header[4] =
      (first ? flags & ~(FLAG_PADDED | FLAG_END_HEADERS) : 0) | (last ? FLAG_END_HEADERS : 0);
    header.writeUInt32BE(streamId, 5);
    frames.push(header, prefix, block.subarray(at, at + take));
    at += take;
    first = false;
  } while (at < block.length);
  return Buffer.concat(frames);
}

/**
 * The client side of an HTTP/2 connection as nghttp2 should read it: the socket's bytes with
 * header blocks rewritten (rewriteHeaderBlock), everything else passed through as it came; what
 * the server writes goes to the socket untouched. After the first header block that needs no
 * change the rest of the connection is passed through unparsed (a client names one authority
 * per connection), so connections from other clients pay only for the extra stream.
 */
export class AuthorityRewriter extends Duplex {
  private pending: Buffer = Buffer.alloc(0);
  /** Bytes still to pass before the first frame (the preface), or -1 once passed. */
  private prefaceLeft = HTTP2_PREFACE.length;
  private passthrough = false;
  /** The HEADERS frame being collected with its CONTINUATIONs. */
  private headers: {
    streamId: number;
    flags: number;
    priority: Buffer;
    fragments: Buffer[];
    bytes: number;
    raw: Buffer[];
  } | null = null;

  /**
   * `initial`: bytes already read from the socket; `dropFirstAck`: the client has yet to
   * acknowledge the SETTINGS `negotiateHttp2` sent, which nghttp2 must not see.
   */
  constructor(
    private readonly socket: Duplex,
    initial: Buffer,
    private dropFirstAck: boolean,
  ) {
    super({ allowHalfOpen: true });
    if (initial.length > 0) this.push(this.transform(initial));
    socket.on('data', (chunk: Buffer) => {
      const out = this.passthrough && !this.dropFirstAck ? chunk : this.transform(chunk);
      if (out.length > 0 && !this.push(out)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.socket.write(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.socket.end(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    done(err);
  }

  private transform(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, data.length);
      out.push(data.subarray(0, n));
      data = data.subarray(n);
      this.prefaceLeft -= n;
    }
    while ((!this.passthrough || this.dropFirstAck) && data.length >= FRAME_HEADER_BYTES) {
      const length = data.readUIntBE(0, 3);
      if (data.length < FRAME_HEADER_BYTES + length) break;
      const frame = data.subarray(0, FRAME_HEADER_BYTES + length);
      data = data.subarray(frame.length);
      out.push(this.onFrame(frame));
    }
    if (this.passthrough && !this.dropFirstAck) {
      out.push(data);
      data = Buffer.alloc(0);
    }
    this.pending = Buffer.from(data);
    return Buffer.concat(out);
  }

  /** The bytes to pass on for one whole frame (none while a header block is incomplete). */
  private onFrame(frame: Buffer): Buffer {
    const type = frame[3]!;
    const flags = frame[4]!;
    const streamId = frame.readUInt32BE(5) & 0x7fffffff;
    const payload = frame.subarray(FRAME_HEADER_BYTES);
    const collecting = this.headers;
    if (this.dropFirstAck && isSettingsAck(frame)) {
      this.dropFirstAck = false;
      return Buffer.alloc(0);
    }
    if (collecting === null && type !== TYPE_HEADERS) return frame;
    if (collecting !== null) {
      // Only CONTINUATIONs of the same stream may follow; nghttp2 judges anything else.
      if (type !== TYPE_CONTINUATION || streamId !== collecting.streamId) {
        this.headers = null;
        return Buffer.concat([...collecting.raw, frame]);
      }
      collecting.raw.push(frame);
      collecting.fragments.push(payload);
      collecting.bytes += payload.length;
      return flags & FLAG_END_HEADERS ? this.endBlock() : this.limitBlock();
    }
    let start = 0;
    let padding = 0;
    if (flags & FLAG_PADDED) {
      padding = payload[0] ?? 0;
      start = 1;
    }
    const priority = flags & FLAG_PRIORITY ? payload.subarray(start, start + 5) : Buffer.alloc(0);
    start += priority.length;
    if (start + padding > payload.length) return frame; // nghttp2 reports it
    const fragment = payload.subarray(start, payload.length - padding);
    this.headers = {
      streamId,
      flags,
      priority: Buffer.from(priority),
      fragments: [fragment],
      bytes: fragment.length,
      raw: [frame],
    };
    return flags & FLAG_END_HEADERS ? this.endBlock() : this.limitBlock();
  }

  private limitBlock(): Buffer {
    const h = this.headers!;
    if (h.bytes <= HEADER_BLOCK_BYTES_MAX) return Buffer.alloc(0);
    this.headers = null;
    this.passthrough = true; // nghttp2 refuses it as too large; nothing left worth rewriting
    return Buffer.concat(h.raw);
  }

  private endBlock(): Buffer {
    const h = this.headers!;
    this.headers = null;
    const rewritten = rewriteHeaderBlock(Buffer.concat(h.fragments));
    if (rewritten === null) {
      this.passthrough = true;
      return Buffer.concat(h.raw);
    }
    return headerFrames(h.streamId, h.flags, h.priority, rewritten);
  }
}

/**
 * How long a new connection may stay without its first request before it is served through
 * AuthorityRewriter anyway (its authority unknown); a connection that sent one is served
 * natively when the authority is acceptable, which is every client but etcd 3.4's given URLs.
 */
export const FIRST_REQUEST_WAIT_MS = 1_000;
/** Bytes a connection may send before its first request is complete (then: rewritten). */
const NEGOTIATION_BYTES_MAX = 128 * 1024;

/**
 * Serves an HTTP/2 connection natively (nghttp2 reading the socket, the fast path) unless its
 * first request carries an authority nghttp2 refuses; then through AuthorityRewriter, whose
 * JavaScript stream halves the connection's throughput. Seeing the first request before the
 * server speaks needs the server's preface first (grpc-go waits for it): `settings` (the frame
 * nghttp2 will send again) is sent here, and the client's ACK of it is taken out of what nghttp2
 * reads (nghttp2 would count it against its own SETTINGS). `initial`: bytes already read.
 */
export function negotiateHttp2(
  socket: Duplex,
  initial: Buffer,
  settings: Buffer,
  serve: (connection: Duplex) => void,
): void {
  socket.write(settings);
  let seen = initial;
  /** Offset of the first frame not yet looked at, and of the ACK once found. */
  let at = HTTP2_PREFACE.length;
  let ack: { start: number; end: number } | null = null;
  let headersEnd = -1;
  let block: Buffer[] = [];
  let done = false;
  const decide = (rewrite: boolean): void => {
    done = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.pause();
    const rest =
      ack === null ? seen : Buffer.concat([seen.subarray(0, ack.start), seen.subarray(ack.end)]);
    if (rewrite) {
      serve(new AuthorityRewriter(socket, rest, ack === null));
    } else {
      if (rest.length > 0) socket.unshift(rest);
      serve(socket);
    }
  };
  const scan = (): void => {
    if (seen.length < HTTP2_PREFACE.length) return;
    if (!seen.subarray(0, HTTP2_PREFACE.length).equals(HTTP2_PREFACE)) {
      decide(true); // nghttp2 refuses it; either path will do
      return;
    }
    while (at + FRAME_HEADER_BYTES <= seen.length) {
      const end = at + FRAME_HEADER_BYTES + seen.readUIntBE(at, 3);
      if (end > seen.length) break;
      const frame = seen.subarray(at, end);
      const type = frame[3]!;
      if (ack === null && isSettingsAck(frame)) ack = { start: at, end };
      else if (headersEnd < 0 && (type === TYPE_HEADERS || type === TYPE_CONTINUATION)) {
        block.push(headerFragment(frame));
        if (frame[4]! & FLAG_END_HEADERS) headersEnd = end;
      } else if (type !== TYPE_SETTINGS && type !== 0x8 /* WINDOW_UPDATE */ && headersEnd < 0) {
        decide(true); // anything else (a PING, DATA…) before the first request: play safe
        return;
      }
      at = end;
    }
    if (ack !== null && headersEnd >= 0) {
      decide(rewriteHeaderBlock(Buffer.concat(block)) !== null);
      block = [];
    } else if (seen.length > NEGOTIATION_BYTES_MAX) decide(true);
  };
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    scan();
  };
  const timer = setTimeout(() => {
    if (!done) decide(true);
  }, FIRST_REQUEST_WAIT_MS);
  timer.unref();
  const onError = (): void => {
    done = true;
    clearTimeout(timer);
    socket.destroy();
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.once('close', () => clearTimeout(timer));
  socket.resume();
  scan();
}

/** A HEADERS or CONTINUATION frame's header block fragment (padding and priority removed). */
function headerFragment(frame: Buffer): Buffer {
  const flags = frame[4]!;
  const payload = frame.subarray(FRAME_HEADER_BYTES);
  if (frame[3] === TYPE_CONTINUATION) return payload;
  let start = 0;
  let padding = 0;
  if (flags & FLAG_PADDED) {
    padding = payload[0] ?? 0;
    start = 1;
  }
  if (flags & FLAG_PRIORITY) start += 5;
  return start + padding > payload.length
    ? Buffer.alloc(0)
    : payload.subarray(start, payload.length - padding);
}
