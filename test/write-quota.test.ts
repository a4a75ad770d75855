// A request cannot fill the host's disk: what it writes into writable allowed paths is capped per
// request (max_request_write), past which a write is short and then ENOSPC and a growing truncate
// EFBIG, as under a disk quota; the next request starts with the whole quota again.
import t from 'tap';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Program } from '../src/index.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';

const ENOSPC = 28;
const EFBIG = 27;

t.test('max_request_write: writes past it are ENOSPC, a growing truncate EFBIG; each request has its own', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-quota-'));
  const program = await Program.load(guestPath('req-diskfill'), {
    maxMemory: 64, concurrency: 1, maxRequestWrite: 4, allowedPaths: [{ real: dir, writable: true }], onLog: () => {},
  });
  try {
    const fill = async (name: string): Promise<string> => (await program.request({ url: `/fill?${join(dir, name)}` })).body.toString();
    t.equal(await fill('a'), `wrote=${4 << 20} errno=${ENOSPC}`, 'the first request writes 4 MiB, then ENOSPC');
    t.equal(statSync(join(dir, 'a')).size, 4 << 20, 'and the host file holds 4 MiB');
    t.equal(await fill('b'), `wrote=${4 << 20} errno=${ENOSPC}`, 'the next request has its own 4 MiB');
    const grow = (await program.request({ url: `/grow?${join(dir, 'c')}` })).body.toString();
    t.equal(grow, `truncate=-1 errno=${EFBIG}`, 'ftruncate to 1 GiB: EFBIG');
    t.equal(statSync(join(dir, 'c')).size, 0, 'and the file did not grow');
  } finally {
    await program.close();
  }
});
