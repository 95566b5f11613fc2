/**
 * Peer TLS settings, shared by everything that opens or accepts a peer connection: the running
 * transport (transport.ts), a recovering member fetching entries (fetch.ts) and a joining member
 * waiting for its identity (join.ts).
 */

/** Mutual TLS: both sides present a certificate signed by `caFile` and verify the other's. */
export interface TransportTlsOptions {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}
