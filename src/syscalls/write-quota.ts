/**
 * How many bytes the request in progress on this thread may still write into writable roots.
 *
 * A writable root is the host's disk: without a quota one request could fill it (and every other
 * program's and the host's with it). Each request starts with max_request_write bytes; writes and
 * truncates that grow files in writable roots draw on it, and past it a write is short and then
 * ENOSPC, a growing truncate EFBIG, as on a file system with a quota. Like the deadline, it belongs
 * to the thread, which runs one request at a time; outside a request there is no quota.
 */

let left = Infinity;

/** A request starts with `bytes` to write (Infinity: no quota). */
export function startWriteQuota(bytes: number): void {
  left = bytes;
}

export function endWriteQuota(): void {
  left = Infinity;
}

/** Takes up to `n` bytes of the quota; returns how many may be written (0 when it is used up). */
export function takeWriteQuota(n: number): number {
  const granted = Math.min(n, left);
  left -= granted;
  return granted;
}

/** Gives back what was taken but not written. */
export function refundWriteQuota(n: number): void {
  left += n;
}

/** What is left, to put back with restoreWriteQuota after another request ran in between (run-loop.ts, nested). */
export function saveWriteQuota(): number {
  return left;
}

export function restoreWriteQuota(saved: number): void {
  left = saved;
}
