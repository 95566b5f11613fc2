/** Peer and client addresses as configs write them (`host:port`) and as URLs (`http://…`). */

/** `secure`: the port speaks TLS, so its URL says `https://` (what etcdctl and peers read). */
export function toUrl(address: string, secure = false): string {
  return address.includes('://') ? address : `${secure ? 'https' : 'http'}://${address}`;
}

export function toAddress(url: string): string {
  const i = url.indexOf('://');
  return i === -1 ? url : url.slice(i + 3).replace(/\/+$/, '');
}

/** `host:port` (IPv6 as `[::1]:2380`) into its parts. */
export function parseHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}
