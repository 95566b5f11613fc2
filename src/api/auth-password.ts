/**
 * Password hashing for etcd's auth store: scrypt (node:crypto, on libuv's thread pool so the
 * event loop never waits on it), hashed at the API edge before a UserAdd or UserChangePassword
 * is proposed, as etcd 3.5 bcrypts before proposing, and checked here on Authenticate.
 *
 * Stored as "scrypt$<logN>$<r>$<p>$<salt base64>$<hash base64>", so the cost can change later
 * without making old hashes unreadable. etcd's own bcrypt hashes ("$2a$10$…"), which arrive with
 * a snapshot restored from etcd, are checked too, so migrated users keep their passwords.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { BCRYPT_HASH, bcryptCost } from '../kv/auth/hash-format.js';
import { ServerError } from '../server/errors.js';

/** scrypt cost: N = 2^14, r = 8 (16 MiB, tens of milliseconds: etcd's bcrypt cost 10 order). */
const LOG_N = 14;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Bytes of a password at most (etcd has no limit; scrypt's input should not be unbounded). */
export const PASSWORD_BYTES_MAX = 4096;
/** scrypt's memory cap: 128 · N · r with room. */
const SCRYPT_MAXMEM = 64 * 1024 * 1024;

/**
 * Hashes running at once at most: they run on libuv's thread pool (4 threads by default), which
 * file I/O shares, so a flood of Authenticate calls must not take all of it.
 */
export const HASHES_IN_FLIGHT_MAX = 2;
/** Hashes waiting for a slot at most; past it, etcd's "too many requests". */
export const HASHES_WAITING_MAX = 64;

let inFlight = 0;
const waiting: (() => void)[] = [];

async function withSlot<T>(work: () => Promise<T>): Promise<T> {
  if (inFlight >= HASHES_IN_FLIGHT_MAX) {
    if (waiting.length >= HASHES_WAITING_MAX) {
      throw new ServerError('TOO_MANY_REQUESTS', 'etcdserver: too many requests');
    }
    await new Promise<void>((resolve) => waiting.push(resolve));
  } else {
    inFlight++;
  }
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next !== undefined)
      next(); // the slot passes on
    else inFlight--;
  }
}

function derive(
  password: string,
  salt: Buffer,
  logN: number,
  r: number,
  p: number,
): Promise<Buffer> {
  return withSlot(
    () =>
      new Promise<Buffer>((resolve, reject) => {
        scrypt(
          password,
          salt,
          HASH_BYTES,
          { N: 2 ** logN, r, p, maxmem: SCRYPT_MAXMEM },
          (err, key) => (err === null ? resolve(key) : reject(err)),
        );
      }),
  );
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, LOG_N, BLOCK_SIZE, PARALLELISM);
  return [
    'scrypt',
    LOG_N,
    BLOCK_SIZE,
    PARALLELISM,
    salt.toString('base64'),
    hash.toString('base64'),
  ].join('$');
}

/** bcrypt reads 72 bytes of a password at most. */
const BCRYPT_PASSWORD_BYTES_MAX = 72;

/** True iff `password` matches `stored` (false for anything that is not a hash we can check). */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  if (BCRYPT_HASH.test(stored)) {
    if (bcryptCost(stored) === null) return false; // a cost past the bound
    if (Buffer.byteLength(password) > BCRYPT_PASSWORD_BYTES_MAX) return false;
    // Loaded on first use: only users restored from an etcd snapshot carry bcrypt hashes, and
    // loading it costs every start-up about 12 ms otherwise.
    return withSlot(async () => {
      const { default: bcrypt } = await import('bcryptjs');
      return bcrypt.compare(password, stored);
    });
  }
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [logN, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  // Only costs this server could have written: a stored record cannot make it allocate more.
  if (logN !== LOG_N || r !== BLOCK_SIZE || p !== PARALLELISM) return false;
  if (Buffer.byteLength(password) > PASSWORD_BYTES_MAX) return false;
  const expected = Buffer.from(parts[5]!, 'base64');
  if (expected.length !== HASH_BYTES) return false;
  const actual = await derive(password, Buffer.from(parts[4]!, 'base64'), logN, r, p);
  return timingSafeEqual(actual, expected);
}
