/**
 * The run's trace. Always a rolling hash of every event's numeric fields (cheap: no strings), so
 * a test can assert that a seed replays identically; the readable per-event lines are built only
 * when `--trace` asks for them.
 */

export class Trace {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193;
  private eventsCount = 0;
  /** The readable lines, or null when not tracing (callers test `enabled` before formatting). */
  readonly lines: string[] | null;
  private readonly sink: ((line: string) => void) | null;

  constructor(options: { readable: boolean; sink?: (line: string) => void }) {
    this.lines = options.readable && options.sink === undefined ? [] : null;
    this.sink = options.readable ? (options.sink ?? null) : null;
  }

  /** From a run's `trace` option: off, kept lines (true), or every line to a sink. */
  static fromOption(option: boolean | ((line: string) => void) = false): Trace {
    return new Trace(
      typeof option === 'function' ? { readable: true, sink: option } : { readable: option },
    );
  }

  get enabled(): boolean {
    return this.lines !== null || this.sink !== null;
  }

  get events(): number {
    return this.eventsCount;
  }

  /** Mixes one event into the hash: a kind code and up to five numbers. */
  mix(kind: number, a = 0, b = 0, c = 0, d = 0, e = 0): void {
    this.eventsCount++;
    this.word(kind);
    this.word(a);
    this.word(b);
    this.word(c);
    this.word(d);
    this.word(e);
  }

  /** Adds a readable line (only call when `enabled`). */
  line(timeMs: number, text: string): void {
    const line = `${timeMs.toFixed(3).padStart(12)}ms ${text}`;
    if (this.sink !== null) this.sink(line);
    else this.lines?.push(line);
  }

  /** The hash so far, as 16 hex digits. */
  hash(): string {
    return (
      (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0')
    );
  }

  private word(x: number): void {
    // Numbers may be fractional (virtual times): fold both the integer and fraction parts.
    const lo = x | 0;
    const hi = Math.floor(x / 4294967296) | 0;
    const frac = ((x - Math.floor(x)) * 1e6) | 0;
    this.h1 = Math.imul(this.h1 ^ lo, 0x01000193);
    this.h1 = Math.imul(this.h1 ^ hi, 0x01000193);
    this.h1 = Math.imul(this.h1 ^ frac, 0x01000193);
    this.h2 = Math.imul(this.h2 + lo, 0x9e3779b1) ^ (this.h2 >>> 15);
    this.h2 = Math.imul(this.h2 + hi + frac, 0x85ebca77) ^ (this.h2 >>> 13);
  }
}
