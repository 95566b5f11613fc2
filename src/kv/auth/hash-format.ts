/**
 * Which stored password hashes a member can check (src/api/auth-password.ts checks them): its
 * own scrypt records, and etcd's bcrypt ones up to a cost bound, which arrive with a snapshot
 * restored from etcd. Pure, so the snapshot restore can name the users whose hash is neither.
 */

/** tandem's own records: "scrypt$<logN>$<r>$<p>$<salt>$<hash>". */
export const SCRYPT_HASH_PREFIX = 'scrypt$';
/** etcd's bcrypt hashes: "$2a$" (Go's), "$2b$" or "$2y$", a two-digit cost, 53 characters. */
export const BCRYPT_HASH = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
/**
 * bcrypt costs accepted at most: etcd's --bcrypt-cost default is 10; each step doubles the CPU of
 * a check, so a stored record cannot ask for hours.
 */
export const BCRYPT_COST_MAX = 12;

/** The bcrypt cost of `stored` when it is a bcrypt hash this member checks, else null. */
export function bcryptCost(stored: string): number | null {
  const m = BCRYPT_HASH.exec(stored);
  if (m === null) return null;
  const cost = Number(m[1]);
  return cost <= BCRYPT_COST_MAX ? cost : null;
}

/** A member can check a password against `stored`. */
export function checkableHash(stored: string): boolean {
  return stored.startsWith(SCRYPT_HASH_PREFIX) || bcryptCost(stored) !== null;
}
