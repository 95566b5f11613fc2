/**
 * TEST HARNESS: GET /metrics on a member's admin port (host:port), checked (200, Prometheus
 * text) and parsed by the strict parser of test/server/prom-text.ts.
 */
import { request } from 'node:http';
import { findSample, type PromFamily, parsePromText } from '../server/prom-text.js';

const SCRAPE_TIMEOUT_MS = 2_000;

export function scrapeAdmin(admin: string): Promise<Map<string, PromFamily>> {
  return new Promise((resolve, reject) => {
    const req = request(`http://${admin}/metrics`, { timeout: SCRAPE_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => {
        try {
          if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${body}`);
          if (!/^text\/plain; version=0\.0\.4/.test(String(res.headers['content-type']))) {
            throw new Error(`content type ${res.headers['content-type']}`);
          }
          resolve(parsePromText(body));
        } catch (error) {
          reject(error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${admin}/metrics timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The value of one series, or 0 when the family or the series is absent (not yet seen). */
export function valueOr0(
  families: Map<string, PromFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  return findSample(families, name, labels) ?? 0;
}
