import type { PeerAddress } from '../io/network.js';
import { TransportError } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Parses `host:port` or `[ipv6]:port`; a bad address is a configuration error. */
export function parseAddress(address: PeerAddress): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(address);
  const port = match === null ? Number.NaN : Number(match[3]);
  if (match === null || !(port > 0 && port < 65536)) {
    throw new TransportError('TRANSPORT_CONFIG', `bad peer address '${address}' (want host:port)`);
  }
  return { host: match[1] ?? match[2]!, port };
}

export function formatAddress(host: string, port: number): PeerAddress {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
