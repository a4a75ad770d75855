// The regex hypercalls (docs/GUEST_ABI.md, "Regular expressions") from a real guest, req-regex: the
// same matches as POSIX regexec natively, Varnish's regsub, the VMOD's copyto test, main()'s handles
// in every request and nothing of a request's in the next, and hostile calls that get an error while
// the host stays up.
import t from 'tap';
import { E } from '../src/host/errno.js';
import { Program, type ProgramOptions } from '../src/runtime/program.js';
import { guestPath, kvmAvailable, runNative } from './helpers/differential.js';

async function withProgram(body: (p: Program) => Promise<void>, options: ProgramOptions = {}): Promise<void> {
  const p = await Program.load(guestPath('req-regex'), { concurrency: 1, ...options });
  try {
    await body(p);
  } finally {
    await p.close();
  }
}

const get = async (p: Program, url: string, headers: Record<string, string> = {}): Promise<string> => {
  const r = await p.request({ url, headers });
  if (r.status !== 200) throw new Error(`${url}: ${r.status} ${r.body.toString()}`);
  return r.body.toString();
};

t.test('sys_regex_match finds a match where POSIX regexec does (the program natively)', async (t) => {
  if (!kvmAvailable(t)) return;
  const native = runNative(guestPath('req-regex'), ['/corpus']);
  t.equal(native.status, 0);
  const lines = native.stdout.toString().trim().split('\n');
  t.ok(lines.length >= 30 && lines.some((l) => l.endsWith(': match')) && lines.some((l) => l.endsWith(': no')), `${lines.length} patterns and subjects, both answers among them`);
  await withProgram(async (p) => {
    t.equal(await get(p, '/corpus'), native.stdout.toString(), 'the same lines in the VM');
  });
});

t.test("Varnish's regsub, and the VMOD's own regex test (copyto)", async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram(async (p) => {
    t.equal(await get(p, '/subst'), await get(p, '/expected-subst'), 'every substitution gives the line req-regex lists for it');
    const r = await p.request({ url: '/copyto', headers: { 'X-Value': '5', 'X-CopyMe': '123', 'X-Other': 'no' } });
    t.equal(r.body.toString(), 'copied=1 find=X-Value: 5');
    t.same(r.headers, { 'x-value': '666', 'x-copyme': '123' }, 'X-Value rewritten by sys_regex_subst, X-CopyMe copied by sys_regex_copyto with the handle main() compiled');
  });
});

t.test("each request starts with main()'s handles, whatever the one before did", async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram(async (p) => {
    const expected = `main0=1 main1=-1 new=2 freed=0 after=${-E.EBADF}`;
    for (let i = 0; i < 3; i++) t.equal(await get(p, '/table'), expected, `request ${i + 1}: handle 0 and 1 work, the new one is 2 again, handle 0 freeable again`);
    await get(p, '/hostile', { 'X-Copy-Me': '1' });
    t.equal(await get(p, '/table'), expected, 'also after a request that filled the table');
  });
});

t.test('a persistent program keeps its handles from one request to the next, as in the VMOD', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram(async (p) => {
    t.equal(await get(p, '/table'), `main0=1 main1=-1 new=2 freed=0 after=${-E.EBADF}`);
    t.equal(await get(p, '/table'), `main0=${-E.EBADF} main1=-1 new=2 freed=${-E.EBADF} after=${-E.EBADF}`, 'handle 0 stays freed, the pattern compiled before keeps its handle');
  }, { ephemeral: false });
});

t.test('hostile calls get an error, and the host stays up', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram(async (p) => {
    const hostile = await get(p, '/hostile', { 'X-Copy-Me': '1' });
    t.equal(hostile, await get(p, '/expected'), 'every line as req-regex lists it');
    // The errnos in that list, checked against the host's numbers rather than the program's.
    t.match(hostile, `compile_bad_pointer=${-E.EFAULT}\n`);
    t.match(hostile, `compile_huge_length=${-E.E2BIG}\n`);
    t.match(hostile, `compile_backreference=${-E.EINVAL}\n`);
    t.match(hostile, `compile_full=${-E.EMFILE}\n`);
    t.match(hostile, `free_again=${-E.EBADF}\n`);
    t.equal(await get(p, '/budget'), 'rc=-47\nnext=1\n', 'a match past its step budget: PCRE2_ERROR_MATCHLIMIT, and the handle still works');
    t.match(await get(p, '/table'), /^main0=1 /, 'the next request is served');
    const stats = p.stats().totals;
    t.equal(stats.exceptions, 0, 'no request failed');
  });
});
