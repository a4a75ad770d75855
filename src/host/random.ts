/**
 * Random bytes for the guest (each request's PRNG seed, getrandom) from the host's CSPRNG, drawn a
 * pool at a time. One randomFillSync costs about 2.4 µs whatever its size up to a few KiB, and every
 * request needs 16 bytes: filling 4 KiB at once makes that ~0.01 µs per request. Each byte of the pool
 * is handed out once, so what one request gets tells nothing of what another gets. The pool belongs to
 * this thread (each worker has its own module instance).
 */
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = new Uint8Array(POOL_SIZE);
let used = POOL_SIZE;

/** Fills `dest` with cryptographically strong random bytes. */
export function fillRandom(dest: Uint8Array): void {
  const n = dest.length;
  if (n > POOL_SIZE / 4) {
    randomFillSync(dest);
    return;
  }
  if (used + n > POOL_SIZE) {
    randomFillSync(pool);
    used = 0;
  }
  dest.set(pool.subarray(used, used + n));
  // Zeroed once given out, so the pool never holds bytes someone already has.
  pool.fill(0, used, used + n);
  used += n;
}
