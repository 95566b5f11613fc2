/**
 * Peer TLS settings, shared by everything that opens or accepts a peer connection: the running
 * transport (transport.ts), a recovering member fetching entries (fetch.ts) and a joining member
 * waiting for its identity (join.ts); and the rule that binds peer certificates to member names.
 */
import type { PeerCertificate } from 'node:tls';
import type { NodeId } from '../raft/types.js';

/** Mutual TLS: both sides present a certificate signed by `caFile` and verify the other's. */
export interface TransportTlsOptions {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** subjectAltName entries looked at, at most (a certificate is the peer's input: bound it). */
const CERT_NAMES_MAX = 64;

/**
 * The names a certificate gives its holder: its subject CN and its DNS subjectAltNames (IP
 * entries name addresses, not members). Empty for no certificate.
 */
export function certificateNames(cert: PeerCertificate | null | undefined): string[] {
  if (cert === null || cert === undefined || Object.keys(cert).length === 0) return [];
  const names: string[] = [];
  const cn = cert.subject?.CN as string | string[] | undefined;
  for (const n of Array.isArray(cn) ? cn : cn === undefined ? [] : [cn]) names.push(n);
  const alt = cert.subjectaltname ?? '';
  for (const entry of alt.split(', ').slice(0, CERT_NAMES_MAX)) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4));
  }
  return names;
}

/**
 * Why a certificate with `names` may not speak as member `id`, or null when it may (config.ts,
 * "TLS"): it must name the member when the member's name is known (`memberNames`); a member the
 * cluster knows by id only (added, not yet published) may use any certificate of the CA that
 * names no other member.
 */
export function memberCertificateRefusal(
  id: NodeId,
  names: readonly string[],
  memberNames: ReadonlyMap<NodeId, string>,
): string | null {
  const expected = memberNames.get(id);
  const shown = names.length === 0 ? 'no name' : names.join(', ');
  if (expected !== undefined && expected !== '') {
    return names.includes(expected)
      ? null
      : `its certificate names ${shown}, not member ${expected} (${id.toString(16)}) it claims to be`;
  }
  for (const [other, name] of memberNames) {
    if (other !== id && name !== '' && names.includes(name)) {
      return `its certificate names member ${name} (${other.toString(16)}), not ${id.toString(16)}`;
    }
  }
  return null;
}
