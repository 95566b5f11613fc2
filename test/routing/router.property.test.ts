/**
 * Properties of the routing core over random topologies and random histories of attempts:
 * choices are always allowed members, the zone preference and the ejection cap hold, the
 * leader follows the highest term, and the latency window agrees with a naive sort.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LatencyWindow } from '../../src/routing/latency.js';
import {
  type AttemptOutcome,
  type MemberDescription,
  type MemberRole,
  Router,
} from '../../src/routing/router.js';

const RUNS = Number(process.env.ROUTING_PROPERTY_RUNS ?? 200);

const arbMembers = fc
  .array(
    fc.record({
      role: fc.constantFrom<MemberRole>('voter', 'voter', 'replica', 'standby'),
      zone: fc.constantFrom('a', 'b', ''),
    }),
    { minLength: 1, maxLength: 7 },
  )
  .map((rows) =>
    rows.map(
      (row, i): MemberDescription => ({
        id: (i + 1).toString(16),
        name: `n${i + 1}`,
        clientUrl: `http://127.0.0.1:${3000 + i}`,
        role: row.role,
        zone: row.zone,
      }),
    ),
  );

const arbStep = fc.record({
  member: fc.nat(6),
  outcome: fc.constantFrom<AttemptOutcome>('ok', 'ok', 'failed', 'abandoned'),
  latencyMs: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 100, max: 400 })),
  gapMs: fc.integer({ min: 0, max: 800 }),
  probe: fc.boolean(),
  excludeMask: fc.nat(127),
});

test('reads and writes only go to allowed members; zone first; ejection capped', () => {
  fc.assert(
    fc.property(
      arbMembers,
      fc.constantFrom('a', 'b', null),
      fc.array(arbStep, { maxLength: 80 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (members, zone, steps, fraction) => {
        const r = new Router({ zone, ejectFractionMax: fraction });
        r.applyTopology({ members, leaderId: members[0]!.id, term: 1 });
        const serving = members.filter((m) => m.role !== 'standby');
        let now = 0;
        for (const step of steps) {
          now += step.gapMs;
          const target = members[step.member % members.length]!;
          const probe = step.probe && r.dueProbes(now).some((m) => m.id === target.id);
          const a = r.begin(target.id, now, probe);
          now += step.latencyMs;
          r.end(a, step.outcome, now);

          const exclude = new Set(
            members.filter((_, i) => (step.excludeMask >> i) & 1).map((m) => m.id),
          );
          const read = r.pickRead(now, exclude);
          const allowed = serving.filter((m) => !exclude.has(m.id));
          if (allowed.length === 0) assert.equal(read, null);
          else {
            assert.ok(read !== null, 'a serving member is left: one is picked');
            assert.notEqual(read.role, 'standby');
            assert.ok(!exclude.has(read.id));
            const report = r.report(now);
            const usable = (id: string) => {
              const m = report.members.find((x) => x.id === id)!;
              return m.health === 'ok' && m.failuresInRow < r.options.failuresToEject;
            };
            const zoneUsable = allowed.filter(
              (m) => zone !== null && m.zone === zone && usable(m.id),
            );
            if (zoneUsable.length > 0)
              assert.equal(read.zone, zone, 'a usable same-zone member wins');
            if (allowed.some((m) => usable(m.id)))
              assert.ok(usable(read.id), 'no ejected member while a usable one exists');
          }
          const write = r.pickLeader(now, exclude);
          if (write !== null) {
            assert.ok(
              write.role === 'voter' || write.id === members[0]!.id,
              'writes go to the leader or a voter',
            );
            assert.ok(!exclude.has(write.id));
          }
          const out = r
            .report(now)
            .members.filter((m) => m.health !== 'ok' && m.role !== 'standby');
          assert.ok(
            out.length <= Math.max(0, Math.floor(serving.length * fraction)),
            `${out.length} of ${serving.length} out, cap ${fraction}`,
          );
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test('the leader is the one of the highest term heard first', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ id: fc.constantFrom('1', '2', '3'), term: fc.nat(10) }), {
        minLength: 1,
        maxLength: 30,
      }),
      (heard) => {
        const r = new Router();
        for (const h of heard) r.noteLeader(h.id, h.term);
        const top = Math.max(...heard.map((h) => h.term));
        const first = heard.find((h) => h.term === top)!;
        assert.equal(r.knownTerm, top);
        r.applyTopology({
          members: ['1', '2', '3'].map((id) => ({
            id,
            name: id,
            clientUrl: `u${id}`,
            role: 'voter',
            zone: '',
          })),
          leaderId: null,
          term: 0,
        });
        assert.equal(r.leader?.id, first.id);
      },
    ),
    { numRuns: RUNS },
  );
});

test('the latency window quantile equals a naive sort of the last samples', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 64 }),
      fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 300 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (capacity, samples, q) => {
        const w = new LatencyWindow(capacity, 1);
        for (const s of samples) w.add(s);
        const last = samples.slice(-capacity).sort((a, b) => a - b);
        const rank = Math.min(last.length - 1, Math.max(0, Math.ceil(q * last.length) - 1));
        assert.equal(w.quantile(q), last[rank]);
      },
    ),
    { numRuns: RUNS },
  );
});
