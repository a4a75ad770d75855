// Warm-up (the `warmup` setting): its requests run in the main VM before the freeze, so every request
// VM starts from the state they left. req-warmup records every request in globals and reports them;
// natively, `req-warmup STYLE N URL` takes N warm-up requests itself first, which is what every
// request VM must have seen.
import t from 'tap';
import { Program, type ProgramOptions } from '../src/runtime/program.js';
import { guestPath, kvmAvailable, runNative } from './helpers/differential.js';
import { okBody, withProgram } from './helpers/programs.js';

const STYLES = ['paused', 'request', 'get'] as const;

const withWarmup = (options: ProgramOptions, body: (p: Program) => Promise<void>): Promise<void> =>
  withProgram('req-warmup', { concurrency: 2, ...options }, body);

t.test('the default warm-up (20 × GET /, User-Agent: tinykvm) is what every request starts from, as natively after 20 warm-ups', async (t) => {
  if (!kvmAvailable(t)) return;
  // One pool for all three programs: they load together.
  await Promise.all(STYLES.map((style) => withWarmup({ mainArguments: [style], warmup: {} }, async (p) => {
    const native = runNative(guestPath('req-warmup'), [style, '20', '/x']);
    t.equal(native.status, 0, `${style}: native run`);
    const expected = native.stdout.toString().replace(/\n$/, '');
    t.equal(expected, `${style} warmup=0 seen=20 warm=20 last=GET / ua=tinykvm x=`, `${style}: natively, 20 warm-ups are seen, each marked as one`);
    // Both forks at once, then each again after its reset: all start from the warmed state.
    const answers = [...await Promise.all([okBody(p, '/x'), okBody(p, '/x')]), ...await Promise.all([okBody(p, '/x'), okBody(p, '/x')])];
    t.same(answers, [expected, expected, expected, expected], `${style}: every request VM, before and after a reset, saw the 20 warm-ups`);
    const logged = p.log.filter((line) => /^warm-up \d+: /.test(line));
    t.same(logged, Array.from({ length: 20 }, (_, i) => `warm-up ${i + 1}: GET /`), `${style}: they ran once, in order, for the program (not per request VM)`);
  })));
});

t.test('the configured request: count, method, URL and fields reach the program; without a warm-up nothing ran', async (t) => {
  if (!kvmAvailable(t)) return;
  const warmup = { numRequests: 3, method: 'HEAD', url: '/prime?k=1', headers: ['X-Warm: yes'] };
  await Promise.all([
    withWarmup({ mainArguments: ['paused'], warmup }, async (p) => {
      t.equal(await okBody(p, '/x'), 'paused warmup=0 seen=3 warm=3 last=HEAD /prime?k=1 ua=tinykvm x=yes', 'paused loop: the flag, the request and its fields (User-Agent: tinykvm added)');
    }),
    withWarmup({ mainArguments: ['request'], warmup }, async (p) => {
      t.equal(await okBody(p, '/x'), 'request warmup=0 seen=3 warm=3 last=HEAD /prime?k=1 ua=tinykvm x=yes', 'handler 3: the same');
    }),
    withWarmup({ mainArguments: ['request'], warmup: { numRequests: 0 } }, async (p) => {
      t.equal(await okBody(p, '/x'), 'request warmup=0 seen=0 warm=0 last=- - ua= x=', 'numRequests 0: no warm-up');
    }),
    withWarmup({ mainArguments: ['paused'] }, async (p) => {
      t.equal(await okBody(p, '/x'), 'paused warmup=0 seen=0 warm=0 last=- - ua= x=', 'no warmup setting: no warm-up');
    }),
  ]);
});

t.test('a persistent program goes on from the warmed state', async (t) => {
  if (!kvmAvailable(t)) return;
  await withWarmup({ mainArguments: ['paused'], warmup: { numRequests: 5 }, ephemeral: false, concurrency: 1 }, async (p) => {
    t.equal(await okBody(p, '/a'), 'paused warmup=0 seen=5 warm=5 last=GET / ua=tinykvm x=');
    t.equal(await okBody(p, '/b'), 'paused warmup=0 seen=6 warm=5 last=GET /a ua= x=', 'the first request is counted on top of the warm-ups');
  });
});

t.test('a warm-up request that fails fails the start, and says which and why', async (t) => {
  if (!kvmAvailable(t)) return;
  const load = (style: string, warmup: ProgramOptions['warmup'], extra: ProgramOptions = {}): Promise<unknown> =>
    Program.load(guestPath('req-warmup'), { mainArguments: [style], warmup, ...extra }).then(async (p) => p.close());
  await Promise.all([
    t.rejects(load('request', { url: '/crash', numRequests: 2 }), {
      code: 'TSKVM_ERR_PROGRAM_INIT', message: /warm-up request 1 of 2 \(GET \/crash\) failed \(TSKVM_ERR_GUEST_FAULT\)/,
    }, 'a handler that crashes'),
    t.rejects(load('paused', { url: '/stuck' }), {
      code: 'TSKVM_ERR_PROGRAM_INIT', message: /warm-up request 1 of 20 \(GET \/stuck\): after its response the program did not get back to wait_for_requests_paused within 1 s/,
    }, 'a paused program that answers and never waits again'),
    t.rejects(load('paused', { url: '/crash' }, { maxRequestTime: 0.5 }), { code: 'TSKVM_ERR_PROGRAM_INIT', message: /TSKVM_ERR_GUEST_FAULT/ }, 'a paused program that crashes'),
  ]);
  await t.rejects(Program.load(guestPath('req-warmup'), { warmup: { headers: ['no colon'] } }), { code: 'TSKVM_ERR_CONFIG', message: /invalid header field "no colon"/ }, 'a field that is not "Key: value" is refused before anything runs');
  await t.rejects(Program.load(guestPath('req-warmup'), { warmup: { url: '' } }), { code: 'TSKVM_ERR_CONFIG', message: /warmup\.url/ }, 'an empty URL');
  await t.rejects(Program.load(guestPath('req-warmup'), { warmup: { numRequests: 70000 } }), { code: 'TSKVM_ERR_CONFIG', message: /warmup\.numRequests/ }, 'more than 65535');
});
