/** TEST HARNESS: whether the `openssl` command (Debian openssl) can make test certificates. */
import { checkOpenssl } from '../../src/cli/dev-certs.js';

/** Why TLS tests cannot run here (naming the package), or false. */
export const OPENSSL_MISSING: string | false = (() => {
  try {
    checkOpenssl();
    return false;
  } catch {
    return 'needs the openssl command to make test certificates (Debian openssl)';
  }
})();
