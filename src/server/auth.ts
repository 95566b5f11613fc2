/**
 * A member's side of etcd's auth (contract.ts's AuthBackend): auth ops and Authenticate go
 * through the log (kind 9 of tandem-state-machine.ts); the store and the simple tokens are read
 * where this member applied them. Password hashing and every permission check are the API
 * edge's (src/api/auth-*.ts), as etcd's are in v3_server.go before proposing.
 */

import type { Clock } from '../io/clock.js';
import type { AuthHeader, AuthOp, AuthOpResult, AuthStore } from '../kv/auth/index.js';
import { simpleTokenIndex } from '../kv/auth/index.js';
import type { LeaseId } from '../kv/types.js';
import type { AuthBackend, RequestOptions } from './contract.js';
import type { CommandResult, TandemMember, TandemStateMachine } from './tandem-state-machine.js';
import { encodeAuth } from './tandem-state-machine.js';

export interface MemberAuthOptions {
  readonly member: TandemMember;
  readonly state: TandemStateMachine;
  readonly clock: Clock;
  /** The façade's proposal (refusals of a standby, cancellation) and linearizable barrier. */
  readonly propose: (
    command: Uint8Array,
    signal?: AbortSignal,
  ) => Promise<{ result: CommandResult }>;
  readonly barrier: (signal?: AbortSignal) => Promise<void>;
}

export class MemberAuth implements AuthBackend {
  constructor(private readonly o: MemberAuthOptions) {}

  store(): AuthStore {
    return this.o.state.auth();
  }

  async propose(op: AuthOp, header: AuthHeader, opts: RequestOptions): Promise<AuthOpResult> {
    const { result } = await this.o.propose(encodeAuth({ kind: 'op', header, op }), opts.signal);
    if (result.kind === 'auth') return result.result;
    if (result.kind === 'authRejected') throw result.error;
    throw new Error(`auth op answered as ${result.kind}`);
  }

  async authenticate(name: string, tokenPrefix: string, opts: RequestOptions): Promise<string> {
    const command = encodeAuth({ kind: 'authenticate', name, tokenPrefix });
    const { result } = await this.o.propose(command, opts.signal);
    if (result.kind === 'authenticated') return result.token;
    if (result.kind === 'authRejected') throw result.error;
    throw new Error(`authenticate answered as ${result.kind}`);
  }

  barrier(signal?: AbortSignal): Promise<void> {
    return this.o.barrier(signal);
  }

  async simpleTokenUser(token: string, signal?: AbortSignal): Promise<string | null> {
    const index = simpleTokenIndex(token);
    if (index === null) return null;
    // Made by an entry not applied here yet (the client authenticated on another member): it
    // was committed before the client had the token, so one barrier covers it.
    if (index > this.o.member.appliedIndex) await this.o.barrier(signal);
    return this.o.state.simpleTokens.use(token, this.o.clock.now());
  }

  leaseKeys(id: LeaseId): readonly Uint8Array[] {
    const lessor = this.o.state.lessor;
    if (!lessor.exists(id)) return [];
    return lessor.timeToLive(id, this.o.clock.now(), true).keys;
  }
}
