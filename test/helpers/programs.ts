/**
 * Programs that serve requests, for tests: load a guest from test/guests/bin, use it, close it.
 *
 *   await withProgram('req-hello', { concurrency: 1 }, async (p) => {
 *     t.equal(await okBody(p, '/x'), 'hello');
 *   });
 */
import { Program, type ProgramOptions } from '../../src/runtime/program.js';
import { guestPath } from './differential.js';

/** Loads test/guests/bin/`name` with `options`, runs `body` with it, and closes it whatever happens. */
export async function withProgram<T>(name: string, options: ProgramOptions, body: (p: Program) => Promise<T>): Promise<T> {
  const p = await Program.load(guestPath(name), options);
  try {
    return await body(p);
  } finally {
    await p.close();
  }
}

/** The body of a GET of `url`; any status but 200 throws, with the body that came. */
export async function okBody(p: Program, url: string): Promise<string> {
  const r = await p.request({ url });
  if (r.status !== 200) throw new Error(`${url}: ${r.status} ${r.body.toString()}`);
  return r.body.toString();
}
