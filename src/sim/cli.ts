/**
 * The simulator's command line (`npm run sim -- …`).
 *
 *   npm run sim -- --seeds 2000 [--start 0] [--nodes 5] [--bug NAME] [--max-steps N] [--stop]
 *   npm run sim -- --seed 1234 [--trace] [--bug NAME] [--nodes 5]
 *   npm run sim -- --member --seeds 2000 [--fault NAME]   (the production member loop + KV)
 *   npm run sim -- --member --redundancy --seeds 500 [--bug POLICY-BUG]   (+ standbys, policy)
 *   npm run sim -- --member --seeds 2000 --bug MEMBER-BUG   (a bug of the parts around the loop)
 *
 * Exit codes:
 *   0  every seed passed
 *   1  an invariant was violated: a safety invariant (election-safety, log-matching,
 *      leader-completeness, committed-stable, state-machine-safety, linearizable-read) or
 *      liveness (no leader or no commit within the bound after healing); the printed line
 *      says which kind
 *   2  the simulator itself crashed (an exception that is not an invariant violation)
 *  64  bad command line
 * When several seeds fail, the most severe code wins: 2, then 1.
 */
import { BUG_NAMES, type BugName } from '../raft/types.js';
import { MEMBER_BUG_NAMES, type MemberBugName } from '../server/assemble.js';
import { SIM_FAULTS, type SimFault } from './member-io.js';
import { POLICY_BUG_NAMES, type PolicyBugName } from './redundancy.js';
import { type RunResult, runSeed, runSeeds } from './runner.js';

export const EXIT_OK = 0;
/** Any invariant, safety or liveness (the contract: a violation exits 1). */
export const EXIT_VIOLATION = 1;
export const EXIT_CRASH = 2;
export const EXIT_USAGE = 64;

const USAGE = `usage:
  npm run sim -- --seeds N [--start S] [--nodes K] [--bug NAME] [--max-steps N] [--stop]
  npm run sim -- --seed S [--trace] [--nodes K] [--bug NAME] [--max-steps N]
  --seeds N      run seeds S..S+N-1 (--start S, default 0); --stop ends at the first failure
  --seed S       run one seed; --trace prints its readable trace
  --nodes K      fix the number of voters (1, 3, 5 or 7; otherwise 3, 5 or 7 by seed)
  --bug NAME     switch on a known raft bug: ${BUG_NAMES.join(', ')}
  --max-steps N  end the safety phase after N events (the liveness phase still runs)
  --no-lease-reads  no seed uses lease-based ReadIndex (by default about 15% do)
  --steps-during-ready  every seed steps messages while a Ready is persisted (else drawn per seed)
  --member       member mode: the production member loop (src/server/member.ts) with the KV
                 state machine on simulated I/O, client-visible checks (src/sim/member-host.ts)
  --fault NAME   member mode with a fault injected in the simulated I/O: ${SIM_FAULTS.join(', ')}
  --redundancy   member mode with standbys (hot, warm, cold) and the production redundancy driver
                 on every member, a nemesis of long failures and flapping members, and the
                 redundancy invariants (src/sim/redundancy.ts); --nodes 3 or 5; --bug also takes
                 a policy bug: ${POLICY_BUG_NAMES.join(', ')}
                 member mode's --bug also takes a bug of the parts around the member loop
                 (role truth, ack=all, lease duties, publication): ${MEMBER_BUG_NAMES.join(', ')}
exit codes: 0 ok, 1 invariant violated (safety or liveness), 2 simulator crash, 64 usage`;

interface CliOptions {
  seeds: number;
  start: number;
  seed: number | null;
  nodes: number | undefined;
  bug: BugName | undefined;
  trace: boolean;
  maxSteps: number | undefined;
  stop: boolean;
  leaseReads: boolean;
  stepsDuringReady: boolean;
  member: boolean;
  fault: SimFault | undefined;
  redundancy: boolean;
  policyBug: PolicyBugName | undefined;
  memberBug: MemberBugName | undefined;
}

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): CliOptions {
  const options: CliOptions = {
    seeds: 100,
    start: 0,
    seed: null,
    nodes: undefined,
    bug: undefined,
    trace: false,
    maxSteps: undefined,
    stop: false,
    leaseReads: true,
    stepsDuringReady: false,
    member: false,
    fault: undefined,
    redundancy: false,
    policyBug: undefined,
    memberBug: undefined,
  };
  const int = (name: string, value: string | undefined): number => {
    const n = Number(value);
    if (value === undefined || !Number.isSafeInteger(n) || n < 0) {
      throw new UsageError(`${name} needs a non-negative integer, got ${value ?? 'nothing'}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--seeds':
        options.seeds = int(flag, value());
        break;
      case '--start':
        options.start = int(flag, value());
        break;
      case '--seed':
        options.seed = int(flag, value());
        break;
      case '--nodes': {
        const n = int(flag, value());
        if (![1, 3, 5, 7].includes(n))
          throw new UsageError(`--nodes must be 1, 3, 5 or 7, got ${n}`);
        options.nodes = n;
        break;
      }
      case '--bug': {
        const name = value();
        if (name !== undefined && (POLICY_BUG_NAMES as readonly string[]).includes(name)) {
          options.policyBug = name as PolicyBugName;
          break;
        }
        if (name !== undefined && (MEMBER_BUG_NAMES as readonly string[]).includes(name)) {
          options.memberBug = name as MemberBugName;
          options.member = true;
          break;
        }
        if (name === undefined || !(BUG_NAMES as readonly string[]).includes(name)) {
          const all = [...BUG_NAMES, ...POLICY_BUG_NAMES, ...MEMBER_BUG_NAMES];
          throw new UsageError(`--bug must be one of ${all.join(', ')}, got ${name ?? 'nothing'}`);
        }
        options.bug = name as BugName;
        break;
      }
      case '--trace':
        options.trace = true;
        break;
      case '--max-steps':
        options.maxSteps = int(flag, value());
        break;
      case '--stop':
        options.stop = true;
        break;
      case '--no-lease-reads':
        options.leaseReads = false;
        break;
      case '--steps-during-ready':
        options.stepsDuringReady = true;
        break;
      case '--member':
        options.member = true;
        break;
      case '--redundancy':
        options.redundancy = true;
        options.member = true;
        break;
      case '--fault': {
        const name = value();
        if (name === undefined || !(SIM_FAULTS as readonly string[]).includes(name)) {
          throw new UsageError(
            `--fault must be one of ${SIM_FAULTS.join(', ')}, got ${name ?? 'nothing'}`,
          );
        }
        options.fault = name as SimFault;
        options.member = true;
        break;
      }
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(EXIT_OK);
        break;
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  if (options.policyBug !== undefined && !options.redundancy) {
    throw new UsageError(`--bug ${options.policyBug} is a policy bug: it needs --redundancy`);
  }
  if (options.redundancy && options.nodes !== undefined && ![3, 5].includes(options.nodes)) {
    throw new UsageError(`--redundancy runs 3 or 5 voters, got --nodes ${options.nodes}`);
  }
  if (options.redundancy && options.fault !== undefined) {
    throw new UsageError('--fault and --redundancy do not combine');
  }
  return options;
}

function replayCommand(result: RunResult, options: CliOptions): string {
  let cmd = `npm run sim -- --seed ${result.seed} --trace`;
  if (options.nodes !== undefined) cmd += ` --nodes ${options.nodes}`;
  if (options.bug !== undefined) cmd += ` --bug ${options.bug}`;
  if (options.policyBug !== undefined) cmd += ` --bug ${options.policyBug}`;
  if (options.memberBug !== undefined) cmd += ` --bug ${options.memberBug}`;
  if (options.maxSteps !== undefined) cmd += ` --max-steps ${options.maxSteps}`;
  if (!options.leaseReads) cmd += ' --no-lease-reads';
  if (options.stepsDuringReady) cmd += ' --steps-during-ready';
  if (options.fault !== undefined) cmd += ` --fault ${options.fault}`;
  else if (options.redundancy) cmd += ' --member --redundancy';
  else if (options.member) cmd += ' --member';
  return cmd;
}

function reportFailure(result: RunResult, options: CliOptions): void {
  const f = result.failure!;
  const what = f.kind === 'crash' ? 'simulator crash' : `${f.kind} violation`;
  console.log(`FAIL seed=${result.seed}: ${what} at ${f.atMs.toFixed(3)}ms`);
  console.log(`  invariant: ${f.invariant ?? '(none: the simulator threw)'}`);
  console.log(`  message:   ${f.message}`);
  console.log(`  params:    ${result.paramsLine}`);
  if (f.kind === 'crash' && f.stack !== undefined) console.log(f.stack);
  console.log(`  replay:    ${replayCommand(result, options)}`);
}

function exitCodeOf(results: readonly RunResult[]): number {
  const kinds = new Set(results.map((r) => r.failure?.kind));
  if (kinds.has('crash')) return EXIT_CRASH;
  if (kinds.has('safety') || kinds.has('liveness')) return EXIT_VIOLATION;
  return EXIT_OK;
}

async function runOne(options: CliOptions): Promise<number> {
  const seed = options.seed!;
  const started = performance.now();
  const result = await runSeed({
    seed,
    ...(options.nodes === undefined ? {} : { voters: options.nodes }),
    ...(options.bug === undefined ? {} : { bug: options.bug }),
    ...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps }),
    ...(options.trace ? { trace: (line: string) => console.log(line) } : {}),
    leaseReads: options.leaseReads,
    stepsDuringReady: options.stepsDuringReady,
    member: options.member,
    ...(options.fault === undefined ? {} : { fault: options.fault }),
    redundancy: options.redundancy,
    ...(options.policyBug === undefined ? {} : { policyBug: options.policyBug }),
    ...(options.memberBug === undefined ? {} : { memberBug: options.memberBug }),
  });
  const wallS = (performance.now() - started) / 1000;
  console.log(result.paramsLine);
  console.log(
    `seed=${seed} ${result.failure === null ? 'ok' : 'FAILED'}: ${result.steps} events, ` +
      `${result.messagesSent} msgs, ${result.virtualMs.toFixed(0)}ms virtual, ` +
      `${result.writesAcked} writes acked, ${result.readsServed} reads, ${result.crashes} crashes, ` +
      `${result.confChanges} conf changes, ${result.leaderTerms} leader terms, ` +
      `liveness in ${result.livenessMs.toFixed(0)}ms, trace=${result.traceHash}, ${wallS.toFixed(2)}s`,
  );
  if (result.failure !== null) reportFailure(result, options);
  return exitCodeOf([result]);
}

async function runMany(options: CliOptions): Promise<number> {
  const tty = process.stdout.isTTY === true;
  const started = performance.now();
  let lastProgress = started;
  let done = 0;
  const summary = await runSeeds({
    seeds: options.seeds,
    start: options.start,
    ...(options.nodes === undefined ? {} : { voters: options.nodes }),
    ...(options.bug === undefined ? {} : { bug: options.bug }),
    ...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps }),
    leaseReads: options.leaseReads,
    stepsDuringReady: options.stepsDuringReady,
    member: options.member,
    ...(options.fault === undefined ? {} : { fault: options.fault }),
    redundancy: options.redundancy,
    ...(options.policyBug === undefined ? {} : { policyBug: options.policyBug }),
    ...(options.memberBug === undefined ? {} : { memberBug: options.memberBug }),
    stopAtFirst: options.stop,
    onResult: (result) => {
      done++;
      if (result.failure !== null) {
        if (tty) process.stdout.write('\r\x1b[K');
        reportFailure(result, options);
      }
      if (tty) {
        const now = performance.now();
        if (now - lastProgress > 250) {
          lastProgress = now;
          const rate = done / ((now - started) / 1000);
          process.stdout.write(
            `\r\x1b[Ksim: ${done}/${options.seeds} seeds, ${rate.toFixed(1)} seeds/s`,
          );
        }
      }
    },
  });
  if (tty) process.stdout.write('\r\x1b[K');
  const wallS = Math.max(1e-9, (performance.now() - started) / 1000);
  const violations = summary.failures.length;
  const extra = [
    options.nodes === undefined ? '' : `voters=${options.nodes}`,
    options.bug === undefined ? '' : `bug=${options.bug}`,
    options.policyBug === undefined ? '' : `bug=${options.policyBug}`,
    options.memberBug === undefined ? '' : `bug=${options.memberBug}`,
    options.member ? 'mode=member' : '',
    options.redundancy ? 'redundancy' : '',
    options.fault === undefined ? '' : `fault=${options.fault}`,
    `start=${options.start}`,
  ]
    .filter((s) => s !== '')
    .join(' ');
  console.log(
    `sim: ${summary.seedsRun} seeds, ${violations} violation${violations === 1 ? '' : 's'}, ` +
      `${(summary.seedsRun / wallS).toFixed(1)} seeds/s, ` +
      `${Math.round(summary.messagesSent / wallS)} msgs/s, ` +
      `${Math.round(summary.steps / wallS)} events/s, ${wallS.toFixed(1)}s (${extra})`,
  );
  return exitCodeOf(summary.failures);
}

async function main(): Promise<void> {
  let options: CliOptions;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`sim: ${error.message}\n${USAGE}`);
    process.exit(EXIT_USAGE);
  }
  let code: number;
  try {
    code = options.seed !== null ? await runOne(options) : await runMany(options);
  } catch (error) {
    console.error('sim: the simulator crashed outside a seed');
    console.error(error);
    code = EXIT_CRASH;
  }
  process.exitCode = code;
}

await main();
