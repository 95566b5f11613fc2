export type { HostPort } from './address.js';
export { formatAddress, parseAddress } from './address.js';
export { TransportError, type TransportErrorCode } from './errors.js';
export { type FaultCounters, FaultInjector, type LinkFault } from './faults.js';
export * from './limits.js';
export { SILENT_LOGGER, type TransportLogger } from './logger.js';
export type { LinkState, LinkStatus, PeerDrops, PeerStatus } from './peer.js';
export { REAL_TIMERS, type TimerHandle, type TransportTimers } from './timers.js';
export {
  TcpTransport,
  type TcpTransportOptions,
  type TransportStatus,
  type TransportTlsOptions,
} from './transport.js';
