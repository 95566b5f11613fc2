/**
 * TEST HARNESS: the etcdctl script of the auth differential test (auth-differential.test.ts):
 * user, role and auth commands, then reads and writes as users with and without permissions,
 * then management as root; and its runner, which records every command's output and exit code.
 */
import { ctl } from './clients.js';

/** One etcdctl run: its arguments and what it reads on stdin. */
export interface Step {
  readonly args: readonly string[];
  readonly input?: string;
  /** Run against the first endpoint only (a command that prints one line per endpoint). */
  readonly oneEndpoint?: boolean;
}

/** etcdctl's dial timeout here (the harness's 3 s is tight for a loaded machine). */
const DIAL_TIMEOUT_S = 12;

const s = (line: string, input?: string): Step => ({
  args: line.split(' '),
  ...(input !== undefined && { input }),
});
const ROOT = '--user=root:rootpw';
const ALICE = '--user=alice:alicepw';
const BOB = '--user=bob:bobpw';

/** The script: setup with auth off, then checks with auth on, then management as root. */
export const AUTH_SCRIPT: readonly Step[] = [
  s('auth enable'),
  s('user add root:rootpw'),
  s('user add alice:alicepw'),
  s('user add bob:bobpw'),
  s('user add alice:other'),
  s('user add nopw --no-password'),
  s('user list'),
  s('role add root'),
  s('role add reader'),
  s('role add writer'),
  s('role add reader'),
  s('role list'),
  s('user grant-role root root'),
  s('user grant-role alice reader'),
  s('user grant-role alice reader'),
  s('user grant-role alice nosuch'),
  s('user grant-role nosuch reader'),
  s('user get alice'),
  s('user get nosuch'),
  s('role grant-permission reader read foo'),
  s('role grant-permission reader read a b'),
  s('role grant-permission reader --prefix=true read p/'),
  s('role grant-permission reader read p/'),
  s('role grant-permission writer readwrite --prefix=true w/'),
  s('role grant-permission writer write --from-key=true x'),
  s('role grant-permission writer read --from-key=true foo2'),
  s('role grant-permission nosuch read foo'),
  // Not here: `read b a` (an inverted range). etcd 3.4.23 stores it; later etcd (and tandem)
  // refuse it with "invalid auth management" (isValidPermissionRange).
  s('role get reader'),
  s('role get writer'),
  s('role revoke-permission reader a b'),
  s('role revoke-permission reader nosuch'),
  s('role revoke-permission reader p/'),
  s('role get reader'),
  s('user grant-role bob writer'),
  s('user revoke-role alice writer'),
  s('user get bob'),
  s('put foo bar'),
  s('put p/1 v1'),
  s('put p/2 v2'),
  s('put w/1 v1'),
  s('auth enable'),
  s('auth enable'),
  s('get foo'),
  s('put foo x'),
  s(`get foo ${ALICE}`),
  s('get foo --user=alice:wrong'),
  s('get foo --user=nosuch:pw'),
  s(`get --prefix p/ ${ALICE}`),
  s(`get --prefix p ${ALICE}`),
  s(`get w/1 ${ALICE}`),
  s(`put foo x ${ALICE}`),
  s(`put w/2 v2 ${BOB}`),
  s(`get --prefix w/ ${BOB}`),
  s(`put x v ${BOB}`),
  s(`put zz v ${BOB}`),
  s(`get x ${BOB}`),
  s(`get --from-key foo2 ${BOB}`),
  s(`get --from-key foo ${BOB}`),
  s(`del w/2 ${BOB}`),
  s(`del foo ${BOB}`),
  s(`del --prefix w/ ${BOB}`),
  s(`del --prefix p/ ${ROOT}`),
  s(`put p/3 v3 ${ROOT}`),
  s(`txn ${BOB}`, 'value("foo") = "bar"\n\nput w/3 v3\n\n\n'),
  s(`txn ${BOB}`, 'value("w/1") = "v1"\n\nput w/3 v3\n\nput foo no\n\n'),
  s(`txn ${BOB}`, 'value("w/1") = "v1"\n\nput w/3 v3\n\nput x2 v\n\n'),
  s(`txn ${ALICE}`, 'value("foo") = "bar"\n\nget foo\n\nget p/3\n\n'),
  s(`watch w/1 ${ALICE}`),
  s(`watch --prefix p ${ALICE}`),
  s('watch w/1'),
  s(`user add carol:c ${ALICE}`),
  s(`user list ${ALICE}`),
  s(`role list ${ALICE}`),
  s(`user get alice ${ALICE}`),
  s(`user get bob ${ALICE}`),
  s(`role get reader ${ALICE}`),
  s(`role get writer ${ALICE}`),
  s(`auth disable ${ALICE}`),
  s(`member add m2 --peer-urls=http://127.0.0.1:1 ${ALICE}`),
  { ...s(`defrag ${ALICE}`), oneEndpoint: true },
  s(`user passwd alice --interactive=false ${ROOT}`, 'newpw\n'),
  s(`get foo ${ALICE}`),
  s('get foo --user=alice:newpw'),
  s('get foo --user=nopw:x'),
  s(`user delete root ${ROOT}`),
  s(`role delete root ${ROOT}`),
  s(`user revoke-role root root ${ROOT}`),
  s(`role delete reader ${ROOT}`),
  s(`user get alice ${ROOT}`),
  s('get foo --user=alice:newpw'),
  s(`user delete bob ${ROOT}`),
  s(`user delete bob ${ROOT}`),
  s(`get w/1 ${BOB}`),
  s(`user list ${ROOT}`),
  s(`role list ${ROOT}`),
  s(`auth disable ${ROOT}`),
  s('get foo'),
  s('user list'),
  s('user delete root'),
  s('auth enable'),
];

/**
 * Runs the script against `endpoints`; the transcript, normalized only where runs legitimately
 * differ: clientv3's own retry log lines (timestamps, client ids) are dropped, and the endpoint
 * a message names is replaced by <endpoint>.
 */
export async function runScript(
  endpoints: readonly string[],
  script: readonly Step[],
): Promise<string> {
  let out = '';
  for (const step of script) {
    const at = step.oneEndpoint === true ? endpoints.slice(0, 1) : endpoints;
    // A wrong password costs a slow hash on each endpoint etcdctl tries, in its dial time.
    const r = await ctl(at, [...step.args, `--dial-timeout=${DIAL_TIMEOUT_S}s`], step.input ?? '');
    const text = `${r.stdout}${r.stderr}`
      .split('\n')
      .filter((line) => !line.startsWith('{"level":'))
      .join('\n')
      .replaceAll(/\[127\.0\.0\.1:\d+\]/g, '[<endpoint>]');
    out += `$ etcdctl ${step.args.join(' ')}\n${text}[exit ${r.code}]\n`;
  }
  return out;
}
