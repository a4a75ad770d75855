// The helpers of guest/include/kvm_api.h that the VMOD's header has and the other request programs do
// not use: req-header calls each one, in a VM and natively where it needs no host, and reports what
// it got.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Program } from '../src/runtime/program.js';
import { guestBinDir, guestPath, kvmAvailable, repoRoot, runNative, spawnClean } from './helpers/differential.js';
import { withProgram } from './helpers/programs.js';

const LONG = `X-Long: ${'a'.repeat(5000)}`;

/** The answer's `key=value` lines as a record. */
async function report(p: Program): Promise<Record<string, string>> {
  const r = await p.request({ method: 'VERYLONGMETHODNAME', url: '/h', headers: [LONG] });
  if (r.status !== 200) throw new Error(`${r.status}: ${r.body.toString()}`);
  return Object.fromEntries(r.body.toString().trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

t.test('natively: the environment macros say "not sandboxed", EMBED_BINARY and TRUST_ME work without a host', async (t) => {
  const native = runNative(guestPath('req-header'), []);
  t.equal(native.status, 0);
  const source = readFileSync(join(repoRoot, 'test/guests/requests/header.c'), 'latin1');
  t.equal(native.stdout.toString(), [
    'env=0 1 0 0 0 0',
    `embed=${source.length} ${source.slice(0, source.indexOf('\n'))} nul=1`,
    'trust_me=1',
  ].join('\n') + '\n', 'IS_LINUX_MAIN() alone is true; the embedded bytes are the file\'s, with a zero after them');
  // Started through PATH, argv[0] has no '/': the VMOD's argv[0] test would call this sandboxed.
  const viaPath = spawnClean('req-header', [], { PATH: guestBinDir }, { timeoutMs: 60_000 });
  t.equal(viaPath.stdout.toString().split('\n')[0], 'env=0 1 0 0 0 0', 'started through PATH: still not sandboxed (KVM_NAME, not argv[0], decides)');
});

t.test('in a VM: each helper does what kvm_api.h says tskvm does', async (t) => {
  if (!kvmAvailable(t)) return;
  const native = runNative(guestPath('req-header'), []).stdout.toString().split('\n');
  await Promise.all([
    withProgram('req-header', { concurrency: 1, sharedMemory: 2 }, async (p) => {
      const first = await report(p);
      const second = await report(p);
      t.equal(first.env, '1 0 0 1 0 1', 'IS_SANDBOXED_MAIN, not IS_LINUX_MAIN, not IS_STORAGE, IS_REQUEST (KVM_TYPE=request), not IS_DEBUG (KVM_DEBUG=0), and kvm_is_sandboxed agrees');
      t.equal(`embed=${first.embed}`, native[1], 'EMBED_BINARY: the same bytes as natively');
      t.equal(`trust_me=${first.trust_me}`, native[2], 'TRUST_ME: the same as natively');
      t.equal(first.shm, '0,16,24,null', 'SHM_ALLOC_TYPE(struct pair) at 0, SHM_ALLOC_BYTES(3) at 16, SHM_ALLOC(u64) aligned to 24; the rest of the region does not fit');
      t.same([first.shm_values, second.shm_values], ['42 1', '42 2'], 'what main wrote there is there, and a request\'s write stays for the next (shared memory, not the fork\'s)');
      t.same([first.shm_request, second.shm_request], ['32', '32'], 'a request\'s allocation is forgotten at the reset: the next request gets the same bytes');
      t.equal(first.alloc_find, `${LONG.length} X-Long: aaaa`, 'http_alloc_find: the whole field, longer than the VMOD\'s 4 KiB buffer');
      t.equal(first.alloc_missing, '0', 'http_alloc_find of a field that is not there: ""');
      t.equal(first.alloc_method, 'VERYLONGMETHODNAME', 'http_alloc_method: the method, longer than the VMOD\'s 15 bytes');
      const { regex, multiprocess, adns, sys_request: request, sockets } = first;
      t.equal(regex, '0 -9 -9 -9', 'the regex calls are declared as the host has them: a handle, and after sys_regex_free -EBADF for it');
      t.same({ multiprocess, adns, request, sockets }, {
        multiprocess: '-38 -38 -38 -38', adns: '-38 -38 -38 -38', request: '-38', sockets: '-22 0',
      }, 'what tskvm does not implement: multiprocess, ActiveDNS and sys_request answer -ENOSYS; socket handler 8 is refused (-EINVAL), 12 accepted');
      t.equal(first.warmup, '0', 'IS_WARMUP_REQUEST through the backend_request spelling: a client\'s request is none');
      t.same(p.log.filter((l) => l.startsWith('header: ')), ['header: vlogf /h', 'header: vlogf /h'], 'vlogf: a line to the program\'s log');
    }),
    withProgram('req-header', { concurrency: 1 }, async (p) => {
      const r = await report(p);
      t.equal(r.shm, 'null,null,null,null', 'without shared_memory every SHM_ALLOC gives NULL');
      t.equal(r.shm_request, 'null');
    }),
  ]);
});
