/**
 * Keeps a Router's topology current: asks every known member (the seeds, then every member the
 * registry names) for GET /status on its client port, every `intervalMs`, and at once when
 * asked (a leader failed, a member said the leader changed); while no leader is known it asks
 * every `fastIntervalMs`.
 */
import { request as httpsRequest } from 'node:https';
import type { Router } from '../routing/router.js';
import { type StatusAnswer, topologyFrom } from '../routing/topology.js';
import type { UpstreamTls } from './upstream.js';

export const TOPOLOGY_INTERVAL_MS = 1_000;
export const TOPOLOGY_FAST_INTERVAL_MS = 100;
export const STATUS_TIMEOUT_MS = 1_000;
/** Status answers bigger than this are refused (a registry of 64 members is a few KiB). */
export const STATUS_BYTES_MAX = 1024 * 1024;

export interface TopologyPollerOptions {
  readonly seeds: readonly string[];
  readonly router: Router;
  readonly intervalMs?: number;
  readonly fastIntervalMs?: number;
  /** Called after each refresh that found a topology (leader changes, members). */
  readonly onRefresh?: () => void;
  readonly onError?: (error: Error) => void;
  /** For https:// members: the authority and client certificate to use (upstream.ts). */
  readonly tls?: UpstreamTls;
}

/** `host:port` or a URL, as a client URL (`https://` for a bare host:port when `tls`). */
export function asUrl(endpoint: string, tls = false): string {
  if (endpoint.includes('://')) return endpoint.replace(/\/+$/, '');
  return `${tls ? 'https' : 'http'}://${endpoint}`;
}

export class TopologyPoller {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<boolean> | null = null;
  private closed = false;
  private readonly seeds: string[];
  refreshes = 0;

  constructor(private readonly o: TopologyPollerOptions) {
    if (o.seeds.length === 0) throw new Error('no endpoints given');
    this.seeds = o.seeds.map((seed) => asUrl(seed, o.tls !== undefined));
  }

  /** First refresh; rejects when no endpoint answers within `timeoutMs`. */
  async start(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.refresh()) break;
      if (Date.now() >= deadline || this.closed) {
        throw new Error(`no member answered /status at ${this.seeds.join(', ')}`);
      }
      await new Promise((r) => setTimeout(r, TOPOLOGY_FAST_INTERVAL_MS));
    }
    this.schedule();
  }

  /** Refreshes now (joins a refresh under way); true when a topology was found. */
  refresh(): Promise<boolean> {
    this.running ??= this.poll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.closed) return;
    const slow = this.o.intervalMs ?? TOPOLOGY_INTERVAL_MS;
    const fast = this.o.fastIntervalMs ?? TOPOLOGY_FAST_INTERVAL_MS;
    this.timer = setTimeout(
      () => {
        this.refresh().finally(() => this.schedule());
      },
      this.o.router.leader === null ? fast : slow,
    );
    this.timer.unref();
  }

  private async poll(): Promise<boolean> {
    const router = this.o.router;
    const urls = new Set(this.seeds);
    for (const id of router.memberIds()) urls.add(router.member(id)!.clientUrl);
    const answers = await Promise.all([...urls].map((url) => this.ask(url)));
    const topology = topologyFrom(answers.filter((a): a is StatusAnswer => a !== null));
    if (topology === null) return false;
    this.refreshes++;
    router.applyTopology(topology);
    this.o.onRefresh?.();
    return true;
  }

  private async ask(url: string): Promise<StatusAnswer | null> {
    try {
      let text: string | null;
      if (url.startsWith('https://') && this.o.tls !== undefined) {
        text = await httpsText(`${url}/status`, this.o.tls);
      } else {
        const res = await fetch(`${url}/status`, {
          signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
        });
        text = res.ok ? await res.text() : null;
      }
      if (text === null || text.length > STATUS_BYTES_MAX) return null;
      const answer = JSON.parse(text) as StatusAnswer;
      if (typeof answer.term !== 'number' || typeof answer.memberId !== 'string') return null;
      return answer;
    } catch (error) {
      this.o.onError?.(error as Error);
      return null;
    }
  }
}

/** GET over TLS with our own authority and client certificate (fetch takes neither). */
function httpsText(url: string, tls: UpstreamTls): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        timeout: STATUS_TIMEOUT_MS,
        ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        ...(tls.cert === undefined ? {} : { cert: tls.cert }),
        ...(tls.key === undefined ? {} : { key: tls.key }),
        ...(tls.servername === undefined ? {} : { servername: tls.servername }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > STATUS_BYTES_MAX) {
            req.destroy();
            resolve(null);
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () =>
          resolve(res.statusCode === 200 ? Buffer.concat(chunks).toString('utf8') : null),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in ${STATUS_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}
