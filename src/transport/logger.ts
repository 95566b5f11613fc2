/**
 * The logger the transport writes to: the subset of pino's API it uses, so a pino instance (or
 * a child of one) can be passed as is. The default is silent.
 */
export interface TransportLogger {
  error(obj: object, message: string): void;
  warn(obj: object, message: string): void;
  info(obj: object, message: string): void;
  debug(obj: object, message: string): void;
}

function silent(): void {}

export const SILENT_LOGGER: TransportLogger = Object.freeze({
  error: silent,
  warn: silent,
  info: silent,
  debug: silent,
});
