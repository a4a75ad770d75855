// The streaming POST handler (register_func 4): req-streampost gets a request's body piece by piece, in
// order, before its POST handler runs, and what it saw equals what it sees natively given the same
// pieces; a handler that does not take a piece whole, or crashes, fails the request.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { STREAM_POST_PIECE } from '../src/runtime/request-vm.js';
import { guestPath, kvmAvailable, runNative } from './helpers/differential.js';
import { withProgram } from './helpers/programs.js';

t.test('each piece of the body, in order, then the POST handler with only the length', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-streampost', { concurrency: 1, onLog: () => {} }, async (p) => {
    for (const size of [1, STREAM_POST_PIECE, STREAM_POST_PIECE + 1, 5 * STREAM_POST_PIECE + 123]) {
      const body = randomBytes(size);
      const native = runNative(guestPath('req-streampost'), ['/x'], { input: body }).stdout.toString();
      const res = await p.request({ method: 'POST', url: '/x', body });
      t.equal(res.status, 200, res.body.toString());
      t.equal(res.body.toString(), native, `${size} bytes: the same pieces, hash and lengths as natively`);
      t.match(native, new RegExp(`^pieces=${Math.ceil(size / STREAM_POST_PIECE)} bytes=${size} in_order=1 fnv=[0-9a-f]{16} body=null len=${size}\\n$`));
    }
    t.equal((await p.request({ url: '/x' })).body.toString(), 'get\n', 'no body: the GET handler, no streaming');
  });
});

t.test('a streaming POST handler that does not take a piece whole, or crashes, fails the request; the next is served', async (t) => {
  if (!kvmAvailable(t)) return;
  await withProgram('req-streampost', { concurrency: 1, onLog: () => {} }, async (p) => {
    const body = randomBytes(3 * STREAM_POST_PIECE);
    const short = await p.request({ method: 'POST', url: '/short', body });
    t.equal(short.error?.code, 'TSKVM_ERR_BAD_RESPONSE');
    t.match(short.error?.message, `the streaming POST handler took ${STREAM_POST_PIECE - 1} of the ${STREAM_POST_PIECE} bytes at offset ${STREAM_POST_PIECE}`);
    const crash = await p.request({ method: 'POST', url: '/crash', body });
    t.equal(crash.error?.code, 'TSKVM_ERR_GUEST_FAULT');
    const ok = await p.request({ method: 'POST', url: '/x', body });
    t.match(ok.body.toString(), /^pieces=3 bytes=196608 in_order=1 /, 'the next request starts from a clean fork');
  });
});
