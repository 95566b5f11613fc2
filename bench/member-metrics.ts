/**
 * A tandem member's Prometheus metrics as the benchmarks read them (GET /metrics on the admin
 * endpoint, src/server/metrics.ts): scraped before and after a cell, the difference is the
 * cell's. Only what the benchmarks print is read: the event-loop delay histogram, whether the
 * member leads, and the WAL fdatasync totals.
 */
import { request } from 'node:http';

export const SCRAPE_TIMEOUT_MS = 2000;
/** Bytes of one exposition read at most (a member's is a few tens of kB). */
const SCRAPE_BYTES_MAX = 4 * 1024 * 1024;

const EVENT_LOOP = 'tandem_event_loop_delay_seconds';

/** One scrape: the samples the benchmarks use. */
export interface MemberScrape {
  /** Event-loop delay histogram: upper bounds (seconds, +Inf last) and cumulative counts. */
  readonly loopBoundsSeconds: readonly number[];
  readonly loopCumulative: readonly number[];
  readonly isLeader: boolean;
  readonly fsyncSeconds: number;
  readonly fsyncs: number;
}

/** The exposition text of `address` (host:port) /metrics; rejects on failure or timeout. */
export function fetchMetricsText(address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`http://${address}/metrics`, { timeout: SCRAPE_TIMEOUT_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (text.length > SCRAPE_BYTES_MAX) req.destroy(new Error('metrics too large'));
      });
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 300) reject(new Error(`metrics: HTTP ${res.statusCode}`));
        else resolve(text);
      });
      res.on('error', reject);
    });
    req.on('timeout', () =>
      req.destroy(new Error(`metrics: no answer in ${SCRAPE_TIMEOUT_MS} ms`)),
    );
    req.on('error', reject);
    req.end();
  });
}

/** Reads the samples the benchmarks use from exposition text (unlabelled but for `le`). */
export function parseMemberScrape(text: string): MemberScrape {
  const buckets: { le: number; count: number }[] = [];
  let isLeader = false;
  let fsyncSeconds = 0;
  let fsyncs = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const space = line.lastIndexOf(' ');
    const series = line.slice(0, space);
    const value = Number(line.slice(space + 1));
    if (series.startsWith(`${EVENT_LOOP}_bucket{le="`)) {
      const le = series.slice(`${EVENT_LOOP}_bucket{le="`.length, -2);
      buckets.push({ le: le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), count: value });
    } else if (series === 'tandem_raft_is_leader') isLeader = value === 1;
    else if (series === 'tandem_wal_fsync_seconds_sum') fsyncSeconds = value;
    else if (series === 'tandem_wal_fsync_seconds_count') fsyncs = value;
  }
  buckets.sort((a, b) => a.le - b.le);
  return {
    loopBoundsSeconds: buckets.map((b) => b.le),
    loopCumulative: buckets.map((b) => b.count),
    isLeader,
    fsyncSeconds,
    fsyncs,
  };
}

export async function scrapeMember(address: string): Promise<MemberScrape> {
  return parseMemberScrape(await fetchMetricsText(address));
}

/** The event-loop delay samples between two scrapes, and their quantile `q`. */
export interface LoopDelayDelta {
  readonly samples: number;
  /** Milliseconds, interpolated within its bucket; null without samples. */
  readonly quantileMs: number | null;
  /** The quantile lies beyond the last finite bound: `quantileMs` is that bound. */
  readonly beyondLastBound: boolean;
}

/**
 * The quantile `q` of the samples taken between `before` and `after`, from the buckets'
 * differences, interpolated linearly within its bucket as Prometheus's histogram_quantile does
 * (so it is no finer than the buckets: 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50 ms …).
 */
export function loopDelayQuantile(
  before: MemberScrape,
  after: MemberScrape,
  q: number,
): LoopDelayDelta {
  const bounds = after.loopBoundsSeconds;
  if (bounds.length === 0) throw new Error(`no ${EVENT_LOOP} in the member's metrics`);
  if (before.loopBoundsSeconds.join() !== bounds.join()) throw new Error('bucket bounds changed');
  const delta = after.loopCumulative.map((c, i) => c - (before.loopCumulative[i] ?? 0));
  const samples = delta[delta.length - 1]!;
  if (samples <= 0) return { samples: 0, quantileMs: null, beyondLastBound: false };
  const rank = q * samples;
  const at = delta.findIndex((c) => c >= rank);
  if (bounds[at] === Number.POSITIVE_INFINITY) {
    return { samples, quantileMs: bounds[at - 1]! * 1000, beyondLastBound: true };
  }
  const lower = at === 0 ? 0 : bounds[at - 1]!;
  const below = at === 0 ? 0 : delta[at - 1]!;
  const inBucket = delta[at]! - below;
  const fraction = inBucket === 0 ? 1 : (rank - below) / inBucket;
  return {
    samples,
    quantileMs: (lower + (bounds[at]! - lower) * fraction) * 1000,
    beyondLastBound: false,
  };
}
