/**
 * The peer handshake: a mutual challenge-response over a cluster secret every member holds, so a
 * stranger who reaches the peer port can neither speak Raft nor read entries, with or without TLS.
 *
 *   dialer D                                             acceptor A
 *   HELLO     [clusterId, D, A, nonceD]            ──►   checks cluster, A, admits D
 *             ◄──   CHALLENGE [clusterId, A, nonceA, proof(acceptor)]
 *   checks proof(acceptor): A holds the secret
 *   AUTH      [proof(dialer)]                      ──►   checks proof(dialer): D holds the secret
 *             ◄──   HELLO_OK  [clusterId, A]             (big frames allowed from now on)
 *
 *   proof(role) = HMAC-SHA256(secret, "tandem-peer-auth-v1" ‖ role ‖ clusterId ‖ D ‖ A ‖ nonceD ‖ nonceA)
 *
 * Both nonces are fresh random bytes per connection, so a recorded HELLO/AUTH pair is useless on
 * a new connection (the acceptor's nonce differs), and a proof made for one side cannot be
 * reflected as the other's (the role is inside the MAC). The ids are inside the MAC, so an
 * authenticated HELLO cannot be re-addressed. The secret itself never crosses the wire and is
 * held as a KeyObject, which prints as nothing in logs or status JSON.
 *
 * Without TLS this authenticates the connection's start only: an attacker on the path (not just
 * at the port) could still read or alter the traffic after it; SECURITY.md says so.
 */
import {
  createHmac,
  createSecretKey,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import type { NodeId } from '../raft/types.js';
import {
  expectArray,
  expectBytes,
  expectString,
  expectUint,
  packFrame,
  unpackPayload,
} from './codec.js';
import { TransportError } from './errors.js';
import { FrameType } from './frame.js';
import { CLUSTER_SECRET_BYTES_MAX, CLUSTER_SECRET_BYTES_MIN } from './limits.js';

/** Random bytes per side per connection. */
export const HANDSHAKE_NONCE_BYTES = 32;
/** HMAC-SHA256 output. */
export const HANDSHAKE_PROOF_BYTES = 32;
/** A cluster id is a short hex string; anything longer in a HELLO is malformed. */
export const HANDSHAKE_CLUSTER_ID_CHARS_MAX = 64;

const PROOF_LABEL = 'tandem-peer-auth-v1';

/** The cluster secret as the transport holds it (see the module comment). */
export type ClusterSecret = KeyObject;

/** Wraps the configured secret; throws TRANSPORT_CONFIG when it is too short or too long. */
export function clusterSecret(secret: string | Uint8Array): ClusterSecret {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  if (bytes.length < CLUSTER_SECRET_BYTES_MIN || bytes.length > CLUSTER_SECRET_BYTES_MAX) {
    throw new TransportError(
      'TRANSPORT_CONFIG',
      `the cluster secret must be ${CLUSTER_SECRET_BYTES_MIN} to ${CLUSTER_SECRET_BYTES_MAX} bytes, got ${bytes.length}`,
    );
  }
  return createSecretKey(bytes);
}

export type ProofRole = 'dialer' | 'acceptor';

/** What both sides know once HELLO and CHALLENGE are exchanged. */
export interface HandshakeTranscript {
  readonly clusterId: string;
  readonly dialerId: NodeId;
  readonly acceptorId: NodeId;
  readonly dialerNonce: Uint8Array;
  readonly acceptorNonce: Uint8Array;
}

export function handshakeProof(
  secret: ClusterSecret,
  role: ProofRole,
  t: HandshakeTranscript,
): Buffer {
  const mac = createHmac('sha256', secret);
  // Length-prefixed text fields and fixed-size nonces: no two transcripts encode alike.
  mac.update(`${PROOF_LABEL}\0${role}\0${t.clusterId.length}:${t.clusterId}\0`);
  mac.update(`${t.dialerId}\0${t.acceptorId}\0`);
  mac.update(t.dialerNonce);
  mac.update(t.acceptorNonce);
  return mac.digest();
}

/** Constant-time comparison of a received proof with the expected one. */
export function proofMatches(
  secret: ClusterSecret,
  role: ProofRole,
  t: HandshakeTranscript,
  received: Uint8Array,
): boolean {
  const expected = handshakeProof(secret, role, t);
  return received.length === expected.length && timingSafeEqual(expected, received);
}

export function newNonce(): Buffer {
  return randomBytes(HANDSHAKE_NONCE_BYTES);
}

// ---------------------------------------------------------------------------------------------
// The frames' payloads (every field checked: they come from unauthenticated peers)

export interface Hello {
  readonly clusterId: string;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly nonce: Uint8Array;
}

export interface Challenge {
  readonly clusterId: string;
  readonly acceptorId: NodeId;
  readonly nonce: Uint8Array;
  readonly proof: Uint8Array;
}

function malformed(what: string): TransportError {
  return new TransportError('TRANSPORT_FRAME_MALFORMED', `malformed handshake: ${what}`);
}

function expectClusterId(v: unknown): string {
  const id = expectString(v, 'hello.clusterId');
  if (id.length === 0 || id.length > HANDSHAKE_CLUSTER_ID_CHARS_MAX) throw malformed('cluster id');
  return id;
}

function expectFixedBytes(v: unknown, length: number, what: string): Uint8Array {
  const bytes = expectBytes(v, what);
  if (bytes.length !== length) throw malformed(`${what} of ${bytes.length} bytes`);
  return bytes;
}

export function encodeHello(h: Hello): Buffer {
  return packFrame(FrameType.Hello, [h.clusterId, h.from, h.to, h.nonce]);
}

export function decodeHello(payload: Buffer): Hello {
  const t = expectArray(unpackPayload(payload), 4, 'hello');
  return {
    clusterId: expectClusterId(t[0]),
    from: expectUint(t[1], 'hello.from'),
    to: expectUint(t[2], 'hello.to'),
    nonce: expectFixedBytes(t[3], HANDSHAKE_NONCE_BYTES, 'hello.nonce'),
  };
}

export function encodeChallenge(c: Challenge): Buffer {
  return packFrame(FrameType.Challenge, [c.clusterId, c.acceptorId, c.nonce, c.proof]);
}

export function decodeChallenge(payload: Buffer): Challenge {
  const t = expectArray(unpackPayload(payload), 4, 'challenge');
  return {
    clusterId: expectClusterId(t[0]),
    acceptorId: expectUint(t[1], 'challenge.acceptorId'),
    nonce: expectFixedBytes(t[2], HANDSHAKE_NONCE_BYTES, 'challenge.nonce'),
    proof: expectFixedBytes(t[3], HANDSHAKE_PROOF_BYTES, 'challenge.proof'),
  };
}

export function encodeAuth(proof: Uint8Array): Buffer {
  return packFrame(FrameType.Auth, [proof]);
}

export function decodeAuth(payload: Buffer): Uint8Array {
  const t = expectArray(unpackPayload(payload), 1, 'auth');
  return expectFixedBytes(t[0], HANDSHAKE_PROOF_BYTES, 'auth.proof');
}

export function decodeRefusal(payload: Buffer): string {
  const t = expectArray(unpackPayload(payload), 1, 'refusal');
  return expectString(t[0], 'refusal.reason');
}

// ---------------------------------------------------------------------------------------------
// The dialer's side, shared by the transport's links (peer.ts) and WAL repair (fetch.ts)

/**
 * One dialed connection's handshake: `hello()` first, then each frame until `established`.
 * Throws TRANSPORT_HANDSHAKE_REFUSED on a refusal, a wrong peer or a failed proof.
 */
export class DialerHandshake {
  private readonly nonce = newNonce();
  private answered = false;
  established = false;

  constructor(
    private readonly secret: ClusterSecret,
    private readonly clusterId: string,
    private readonly localId: NodeId,
    private readonly peerId: NodeId,
  ) {}

  hello(): Buffer {
    return encodeHello({
      clusterId: this.clusterId,
      from: this.localId,
      to: this.peerId,
      nonce: this.nonce,
    });
  }

  /** Handles one pre-handshake frame; returns the frame to write back, if any. */
  onFrame(type: FrameType, payload: Buffer): Buffer | null {
    if (type === FrameType.Refuse) {
      throw new TransportError(
        'TRANSPORT_HANDSHAKE_REFUSED',
        `peer refused the handshake: ${decodeRefusal(payload)}`,
      );
    }
    if (type === FrameType.Challenge && !this.answered) {
      this.answered = true;
      return encodeAuth(this.answer(decodeChallenge(payload)));
    }
    if (type === FrameType.HelloOk && this.answered) {
      const t = expectArray(unpackPayload(payload), 2, 'hello ok');
      this.checkPeer(expectString(t[0], 'hello.clusterId'), expectUint(t[1], 'hello.nodeId'));
      this.established = true;
      return null;
    }
    throw new TransportError('TRANSPORT_FRAME_TYPE', `frame type ${type} during the handshake`);
  }

  private answer(c: Challenge): Buffer {
    this.checkPeer(c.clusterId, c.acceptorId);
    const transcript: HandshakeTranscript = {
      clusterId: this.clusterId,
      dialerId: this.localId,
      acceptorId: this.peerId,
      dialerNonce: this.nonce,
      acceptorNonce: c.nonce,
    };
    if (!proofMatches(this.secret, 'acceptor', transcript, c.proof)) {
      throw new TransportError(
        'TRANSPORT_HANDSHAKE_REFUSED',
        `node ${this.peerId} failed authentication (does its cluster.secret differ?)`,
      );
    }
    return handshakeProof(this.secret, 'dialer', transcript);
  }

  private checkPeer(clusterId: string, nodeId: NodeId): void {
    if (clusterId !== this.clusterId || nodeId !== this.peerId) {
      throw new TransportError(
        'TRANSPORT_HANDSHAKE_REFUSED',
        `expected node ${this.peerId} of cluster '${this.clusterId}', ` +
          `found node ${nodeId} of cluster '${clusterId}'`,
      );
    }
  }
}
