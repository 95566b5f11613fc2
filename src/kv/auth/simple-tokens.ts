/**
 * etcd's simple tokens (server/auth/simple_token.go): "<16 random letters>.<log index>", made
 * when an Authenticate entry is applied, so every member that applied it knows the token. Held
 * in memory only (a restarted member forgets them and clients re-authenticate on "invalid auth
 * token", as with etcd); each expires TTL after its last use. Time comes in as arguments.
 */
import { assert } from '../../util/assert.js';

/** etcd's simpleTokenTTLDefault. */
export const SIMPLE_TOKEN_TTL_MS = 300_000;
/** Tokens held at most; past it the one unused longest goes first. */
export const SIMPLE_TOKENS_MAX = 100_000;

interface Held {
  readonly username: string;
  expiresAtMs: number;
}

export class SimpleTokens {
  /** Insertion order is refresh order: a used token moves to the end. */
  private readonly tokens = new Map<string, Held>();

  constructor(private readonly ttlMs = SIMPLE_TOKEN_TTL_MS) {
    assert(ttlMs > 0, 'a token TTL is positive');
  }

  get size(): number {
    return this.tokens.size;
  }

  assign(token: string, username: string, nowMs: number): void {
    this.tokens.delete(token);
    this.tokens.set(token, { username, expiresAtMs: nowMs + this.ttlMs });
    while (this.tokens.size > SIMPLE_TOKENS_MAX) {
      const oldest = this.tokens.keys().next().value as string;
      this.tokens.delete(oldest);
    }
  }

  /** The user of a live token, refreshing its TTL; null when unknown or expired. */
  use(token: string, nowMs: number): string | null {
    const held = this.tokens.get(token);
    if (held === undefined) return null;
    if (held.expiresAtMs <= nowMs) {
      this.tokens.delete(token);
      return null;
    }
    this.tokens.delete(token);
    held.expiresAtMs = nowMs + this.ttlMs;
    this.tokens.set(token, held);
    return held.username;
  }

  invalidateUser(username: string): void {
    for (const [token, held] of this.tokens)
      if (held.username === username) this.tokens.delete(token);
  }

  clear(): void {
    this.tokens.clear();
  }

  /** Drops expired tokens, oldest first, at most `budget` of them (a periodic sweep). */
  sweep(nowMs: number, budget = 1000): void {
    let n = 0;
    for (const [token, held] of this.tokens) {
      if (n++ >= budget || held.expiresAtMs > nowMs) break;
      this.tokens.delete(token);
    }
  }
}

/** The log index a simple token was made at, or null when it is not one (etcd's check). */
export function simpleTokenIndex(token: string): number | null {
  const parts = token.split('.');
  if (parts.length !== 2 || !/^[0-9]{1,15}$/.test(parts[1]!)) return null;
  return Number(parts[1]);
}
