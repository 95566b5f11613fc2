/**
 * A throwaway PKI for local clusters (`tandem dev --tls`, TLS integration tests): one CA, one
 * certificate per member for its client, peer and admin ports (server and client usage; SANs
 * 127.0.0.1, ::1, localhost and the member's name, CN the member's name, so peer certificates
 * are bound to member names as config.ts "TLS" requires), and one client certificate for
 * etcdctl and tools (CN `root`: the user etcd takes from a client certificate once auth is on).
 *
 * Made with the `openssl` command (Debian openssl) rather than a JS library: every host that
 * runs TLS has it, it is what operators use for real certificates, and no pure-JS X.509 writer
 * on npm is as well kept. Files already in the directory are kept, so a restarted dev cluster
 * (and the etcdctl line printed for it) keeps working. EC P-256 keys, valid 30 days.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const DEV_CERT_DAYS = 30;
/** The client certificate's name (see the header). */
export const DEV_CLIENT_NAME = 'root';
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const OPENSSL_TIMEOUT_MS = 20_000;

/** A certificate and its key (PEM file paths). */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export interface DevPki {
  readonly dir: string;
  /** The CA certificate every port trusts. */
  readonly ca: string;
  /** For etcdctl and tools: `--cacert ca --cert client.cert --key client.key`. */
  readonly client: CertFiles;
  /** The member's certificate (made on first use; kept if it exists). */
  member(name: string): CertFiles;
}

export class OpensslMissing extends Error {
  readonly code = 'OPENSSL_MISSING';
}

/** Throws OpensslMissing with what to install when the `openssl` command cannot run. */
export function checkOpenssl(): void {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe', timeout: OPENSSL_TIMEOUT_MS });
  } catch (cause) {
    throw new OpensslMissing(
      'TLS certificates are made with the openssl command, which could not run ' +
        `(${(cause as NodeJS.ErrnoException).code ?? 'error'}); install it (Debian: apt-get install -y openssl)`,
      { cause },
    );
  }
}

/** The PKI in `dir` (created): the CA and the client certificate now, members on demand. */
export function devPki(dir: string): DevPki {
  checkOpenssl();
  mkdirSync(dir, { recursive: true });
  const ca = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: OPENSSL_TIMEOUT_MS });
  };
  if (!existsSync(ca) || !existsSync(caKey)) {
    openssl(
      'req',
      '-x509',
      ...EC_KEY,
      '-days',
      String(DEV_CERT_DAYS),
      '-subj',
      '/CN=tandem-dev-ca',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout',
      caKey,
      '-out',
      ca,
    );
  }
  const leaf = (file: string, name: string, altNames: string): CertFiles => {
    const files = { cert: join(dir, `${file}.crt`), key: join(dir, `${file}.key`) };
    if (existsSync(files.cert) && existsSync(files.key)) return files;
    const csr = join(dir, `${file}.csr`);
    const ext = join(dir, `${file}.ext`);
    openssl('req', ...EC_KEY, '-keyout', files.key, '-out', csr, '-subj', `/CN=${name}`);
    writeFileSync(
      ext,
      `subjectAltName=${altNames}\nextendedKeyUsage=serverAuth,clientAuth\n` +
        'keyUsage=critical,digitalSignature,keyEncipherment\n',
    );
    openssl(
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca,
      '-CAkey',
      caKey,
      '-CAcreateserial',
      '-days',
      String(DEV_CERT_DAYS),
      '-out',
      files.cert,
      '-extfile',
      ext,
    );
    return files;
  };
  const loopback = 'IP:127.0.0.1,IP:::1,DNS:localhost';
  return {
    dir,
    ca,
    client: leaf('client', DEV_CLIENT_NAME, loopback),
    member: (name) => leaf(`member-${name}`, name, `${loopback},DNS:${name}`),
  };
}
