/**
 * Self-publication: a member puts its own facts into the replicated registry — its name and
 * client URLs once (etcd's publish), then its zone and standby settings (registry commands) —
 * retried until applied. Its role is not published: the registry decides it (a demoted voter
 * restarts as a standby whatever its config says).
 *
 * Outside the Raft configuration (a warm or cold standby) a member never applies what it
 * proposes, so it cannot see a publication land: each fact is proposed at most once per leader
 * term, not retried until applied — which would append an entry every request timeout, for ever.
 */
import type { RegistryCommand, StandbyMode } from '../cluster/commands.js';
import { NONE } from '../raft/types.js';
import type { TickSchedule } from './events.js';
import type { RoleTruth } from './role.js';
import {
  encodeMemberAttributes,
  encodeRegistryEntry,
  type TandemMember,
  type TandemStateMachine,
} from './tandem-state-machine.js';

/** How often a member looks for facts of its own the registry lacks. */
export const PUBLISH_INTERVAL_MS = 500;

/** Bugs the simulator switches on to prove its publication check can fail (never in production). */
export type PublicationBugName = 'publish-no-retry';

export interface PublicationOptions {
  readonly member: TandemMember;
  readonly state: TandemStateMachine;
  readonly role: RoleTruth;
  readonly schedule: TickSchedule;
  readonly name: string;
  readonly clientUrls: readonly string[];
  readonly zone?: string;
  readonly standby?: { readonly mode: StandbyMode; readonly snapshotEveryMs: number };
  readonly bugs?: ReadonlySet<string>;
}

export class SelfPublication {
  private readonly o: PublicationOptions;
  private published = false;
  private publishing = false;
  /** Facts proposed from outside the configuration in `outsideProposedTerm` (see header). */
  private readonly outsideProposed = new Set<string>();
  private outsideProposedTerm = 0;
  private readonly noRetry: boolean;

  constructor(options: PublicationOptions) {
    this.o = options;
    this.noRetry = options.bugs?.has('publish-no-retry') ?? false;
    options.schedule.every('publish', PUBLISH_INTERVAL_MS, () => this.publish());
  }

  private publish(): void {
    const member = this.o.member;
    if (this.publishing || member.leader === NONE || !member.running) return;
    if (this.o.role.outsideConfiguration()) {
      this.publishOutside();
      return;
    }
    if (this.published) {
      this.publishPlacementFacts();
      return;
    }
    if (this.attributesCurrent()) {
      this.published = true;
      return;
    }
    this.publishing = true;
    // INJECTED BUG (simulator only): the attributes count as published once proposed.
    if (this.noRetry) this.published = true;
    member.propose(
      encodeMemberAttributes(member.id, this.o.name, [...this.o.clientUrls]),
      (error) => {
        this.publishing = false;
        if (error === null) this.published = true;
      },
    );
  }

  /** The registry shows this member's name and client URLs as configured. */
  private attributesCurrent(): boolean {
    const self = this.o.state.member(this.o.member.id);
    return (
      self !== undefined &&
      self.name === this.o.name &&
      sameUrls(self.clientUrls, this.o.clientUrls)
    );
  }

  private publishPlacementFacts(): void {
    const command = this.placementFactsDue()[0];
    if (command === undefined) return;
    this.publishing = true;
    this.o.member.propose(encodeRegistryEntry(command), () => {
      this.publishing = false;
    });
  }

  /** The zone and standby facts this member's registry copy does not show yet. */
  private placementFactsDue(): RegistryCommand[] {
    const self = this.o.state.member(this.o.member.id);
    if (self === undefined) return [];
    const { zone, standby } = this.o;
    const due: RegistryCommand[] = [];
    if (zone !== undefined && self.zone !== zone) due.push({ kind: 'set-zone', id: self.id, zone });
    if (
      standby !== undefined &&
      (self.standbyMode !== standby.mode || self.snapshotEveryMs !== standby.snapshotEveryMs)
    ) {
      due.push({ kind: 'set-standby', id: self.id, ...standby });
    }
    return due;
  }

  /**
   * Publication from outside the configuration: every fact its (stale) registry copy lacks,
   * each at most once per leader term. Facts the cluster already applied may be proposed again
   * once per term: harmless (the registry commands are idempotent) and bounded.
   */
  private publishOutside(): void {
    const member = this.o.member;
    const term = member.term;
    if (term !== this.outsideProposedTerm) {
      this.outsideProposedTerm = term;
      this.outsideProposed.clear();
    }
    const entries: [string, Uint8Array][] = [];
    if (!this.attributesCurrent()) {
      entries.push([
        'attributes',
        encodeMemberAttributes(member.id, this.o.name, [...this.o.clientUrls]),
      ]);
    }
    for (const command of this.placementFactsDue()) {
      entries.push([command.kind, encodeRegistryEntry(command)]);
    }
    for (const [key, entry] of entries) {
      if (this.outsideProposed.has(key)) continue;
      this.outsideProposed.add(key);
      member.propose(entry, () => {}); // applied where raft runs; never seen here
    }
  }
}

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((u, i) => u === b[i]);
}
