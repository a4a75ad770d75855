// Which way a request goes into a program, in the VMOD's order: the any-method handler (3), else the
// GET handler (1) for a request without a body, else the POST handler (2) for one with a body, else a
// program paused in wait_for_requests_paused resumes. req-dispatch registers the handlers its
// main_arguments name and says in its answer which code took each request.
import t from 'tap';
import type { ProgramRequest } from '../src/runtime/program.js';
import { kvmAvailable } from './helpers/differential.js';
import { withProgram } from './helpers/programs.js';

const GET: ProgramRequest = { method: 'GET', url: '/a' };
const POST: ProgramRequest = { method: 'POST', url: '/b', body: 'xyz' };
const GET_WITH_BODY: ProgramRequest = { method: 'GET', url: '/c', body: '12' };
const POST_WITHOUT_BODY: ProgramRequest = { method: 'POST', url: '/d' };
const PUT: ProgramRequest = { method: 'PUT', url: '/e', body: 'q' };

/** What each request got: the body, or the error code when it failed; then the program's entry_points statistic. */
async function answers(handlers: string, style: 'wait' | 'paused', requests: ProgramRequest[], ephemeral = true): Promise<string[]> {
  return withProgram('req-dispatch', { concurrency: 1, mainArguments: [handlers, style], ephemeral }, async (p) => {
    const out: string[] = [];
    for (const r of requests) {
      const res = await p.request(r);
      out.push(res.error ? res.error.code : res.body.toString());
    }
    out.push(`entry_points=${Object.keys(p.stats().program.entry_points).length}`);
    return out;
  });
}

// Each test loads its programs at once: they share one pool of worker threads, which starts once.
t.test('wait_for_requests: handler 3 takes everything, else GET without a body and POST with one', async (t) => {
  if (!kvmAvailable(t)) return;
  const [all, both, getOnly, postOnly] = await Promise.all([
    answers('rgp', 'wait', [GET, POST, PUT]),
    answers('gp', 'wait', [GET, POST, GET_WITH_BODY, POST_WITHOUT_BODY, PUT]),
    answers('g', 'wait', [GET, POST]),
    answers('p', 'wait', [GET, POST]),
  ]);
  t.same(all, ['request GET /a body=0 n=1', 'request POST /b body=3 n=1', 'request PUT /e body=1 n=1', 'entry_points=3'], 'the any-method handler wins over GET and POST');
  t.same(both, ['get GET /a body=0 n=1', 'post POST /b body=3 n=1', 'post GET /c body=2 n=1', 'get POST /d body=0 n=1', 'post PUT /e body=1 n=1', 'entry_points=2'], 'the body decides, not the method');
  t.same(getOnly, ['get GET /a body=0 n=1', 'TSKVM_ERR_NO_HANDLER', 'entry_points=1'], 'a request with a body never goes to the GET handler');
  t.same(postOnly, ['TSKVM_ERR_NO_HANDLER', 'post POST /b body=3 n=1', 'entry_points=1'], 'nor one without a body to the POST handler');
});

t.test('wait_for_requests_paused: the handlers it registered come first, the paused loop takes the rest', async (t) => {
  if (!kvmAvailable(t)) return;
  const alternating = [1, 2, 3, 4, 5].map((i): ProgramRequest => (i % 2 ? { method: 'GET', url: `/${i}` } : { method: 'POST', url: `/${i}`, body: 'x' }));
  const [none, both, getOnly, postOnly, any, persistent] = await Promise.all([
    answers('-', 'paused', [GET, POST]),
    answers('gp', 'paused', [GET, POST]),
    answers('g', 'paused', [GET, POST]),
    answers('p', 'paused', [GET, POST]),
    answers('r', 'paused', [GET, POST]),
    answers('g', 'paused', alternating, false),
  ]);
  t.same(none, ['paused GET /a body=0 n=1', 'paused POST /b body=3 n=1', 'entry_points=1'], 'no handlers: every request resumes the loop');
  t.same(both, ['get GET /a body=0 n=1', 'post POST /b body=3 n=1', 'entry_points=3'], 'GET and POST handlers take their requests');
  t.same(getOnly, ['get GET /a body=0 n=1', 'paused POST /b body=3 n=1', 'entry_points=2'], 'a body with no POST handler resumes the loop');
  t.same(postOnly, ['paused GET /a body=0 n=1', 'post POST /b body=3 n=1', 'entry_points=2'], 'no body and no GET handler resumes the loop');
  t.same(any, ['request GET /a body=0 n=1', 'request POST /b body=3 n=1', 'entry_points=2'], 'handler 3 takes everything (entry_points: the handlers, plus 1 for the paused loop)');
  t.same(persistent, [
    'get GET /1 body=0 n=1', 'paused POST /2 body=1 n=2', 'get GET /3 body=0 n=3', 'paused POST /4 body=1 n=4', 'get GET /5 body=0 n=5', 'entry_points=2',
  ], 'persistent: handler calls and resumes alternate, memory carries over, and after a resume the loop gets back to its wait before a handler is called');
});
