// sys_fetch (docs/GUEST_ABI.md, "sys_fetch"): a guest (req-fetch) in `tskvm serve` fetches from a
// real HTTP origin on loopback and from the server itself (self-requests), and what it gets is
// compared with what the origin sent and saw.
import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Program } from '../src/runtime/program.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { guestPath, kvmAvailable } from './helpers/differential.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/**
 * The origin: /hello answers text, /redirect sends to /hello, /escape to /hello under another origin
 * (localhost), /slow never answers, /big sends 64 bytes.
 */
async function withOrigin(body: (origin: string, seen: Seen[]) => Promise<void>): Promise<void> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
      if (req.url === '/hello') {
        res.setHeader('content-type', 'text/x-greeting');
        res.setHeader('x-origin', 'yes');
        res.end('hello from the origin');
      } else if (req.url === '/redirect') {
        res.statusCode = 302;
        res.setHeader('location', '/hello');
        res.end();
      } else if (req.url === '/escape') {
        // The same server under another origin: a redirect the program's fetch_origins does not allow.
        res.statusCode = 302;
        res.setHeader('location', `http://localhost:${(server.address() as { port: number }).port}/hello`);
        res.end();
      } else if (req.url === '/big') {
        res.end('x'.repeat(64));
      } else if (req.url === '/slow') {
        // never answers
      } else {
        res.statusCode = 404;
        res.end('no such thing');
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await body(`http://127.0.0.1:${(server.address() as { port: number }).port}`, seen);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

async function withFetchServer(origin: string, body: (s: RunningServer) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-fetch-'));
  const library = join(dir, 'library.json');
  writeFileSync(library, JSON.stringify({
    programs: {
      fetch: { filename: guestPath('req-fetch'), concurrency: 2, max_request_time: 2, fetch_origins: [origin] },
      closed: { filename: guestPath('req-fetch'), concurrency: 1 },
      echo: { filename: guestPath('req-echo') },
    },
  }));
  const server = await startServer({ library, listen: '127.0.0.1:0', adminToken: 'secret', warn: (m) => process.stderr.write(`server: ${m}\n`) });
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

async function get(s: RunningServer, path: string): Promise<{ status: number; text: string }> {
  const res = await request(`${s.url}${path}`);
  return { status: res.statusCode, text: await res.body.text() };
}

async function globals(s: RunningServer): Promise<Record<string, number>> {
  const res = await request(`${s.url}/__tskvm/stats`, { headers: { authorization: 'Bearer secret' } });
  return (JSON.parse(await res.body.text()) as { global: Record<string, number> }).global;
}

t.test('outbound: GET and POST reach an allowed origin, the response comes back into guest memory', async (t) => {
  if (!kvmAvailable(t)) return;
  await withOrigin(async (origin, seen) => {
    await withFetchServer(origin, async (s) => {
      const hello = await get(s, `/fetch/get?${origin}/hello`);
      t.equal(hello.status, 200, hello.text);
      t.match(hello.text, /^rc=0 status=200 ctype=text\/x-greeting len=21\nbody=hello from the origin\nheader=HTTP\/1\.1 200\n$/, 'status, content type, body, header block');
      t.equal(seen.at(-1)!.method, 'GET');

      const post = await get(s, `/fetch/post?${origin}/hello`);
      t.match(post.text, /^rc=0 status=200 /);
      t.match(seen.at(-1), { method: 'POST', body: 'ping', headers: { 'content-type': 'text/x-ping', 'x-from': 'guest' } }, 'the origin got the body, its type and the field');

      t.match((await get(s, `/fetch/get?${origin}/nothing`)).text, /^rc=0 status=404 .*body=no such thing/s, 'a 404 is a response, not an error');
      t.match((await get(s, `/fetch/get?${origin}/redirect`)).text, /^rc=0 status=200 .*body=hello from the origin/s, 'redirects followed without options');
      t.match((await get(s, `/fetch/nofollow?${origin}/redirect`)).text, /^rc=0 status=302 /, 'and not with follow_location 0');
      t.match((await get(s, `/fetch/small?${origin}/big`)).text, /^rc=-23 /, 'a body larger than the guest\'s buffer: CURLE_WRITE_ERROR');
      t.match((await get(s, `/fetch/get?${origin}/hello`)).text, /^rc=0 /, 'and the fork serves the next fetch');
      t.ok((await globals(s)).fetch_time > 0, 'fetch_time counted');
    });
  });
});

t.test('outbound: only to origins in fetch_origins; bad URLs are refused', async (t) => {
  if (!kvmAvailable(t)) return;
  await withOrigin(async (origin, seen) => {
    await withFetchServer(origin, async (s) => {
      t.match((await get(s, `/closed/get?${origin}/hello`)).text, /^rc=-9 /, 'a program without fetch_origins reaches nothing');
      t.match((await get(s, `/fetch/get?${origin.replace('127.0.0.1', 'localhost')}/hello`)).text, /^rc=-9 /, 'another origin: refused');
      t.match((await get(s, '/fetch/get?ftp://127.0.0.1/x')).text, /^rc=-3 /, 'not http(s)');
      t.match((await get(s, '/fetch/get?not a url')).text, /^rc=-3 /, 'not a URL');
      t.equal(seen.length, 0, 'the origin saw none of them');
      t.match((await get(s, `/fetch/get?${origin}/escape`)).text, /^rc=-9 /, 'a redirect to an origin not listed: refused');
      t.same(seen.map((r) => `${r.headers.host} ${r.url}`), [`${new URL(origin).host} /escape`], 'the redirect was not followed');
    });
  });
});

t.test('outbound: a fetch that outlasts the request ends it as a timeout; the fork serves on', async (t) => {
  if (!kvmAvailable(t)) return;
  await withOrigin(async (origin) => {
    await withFetchServer(origin, async (s) => {
      // Started first: a program's start (and a worker's, under tap's TypeScript loader) is not the fetch's time.
      t.match((await get(s, `/fetch/get?${origin}/hello`)).text, /^rc=0 /);
      const started = performance.now();
      const slow = await get(s, `/fetch/get?${origin}/slow`);
      const ms = performance.now() - started;
      t.equal(slow.status, 504, slow.text);
      t.ok(ms >= 1900 && ms < 6000, `ended at max_request_time (2 s): ${ms.toFixed(0)} ms`);
      t.match((await get(s, `/fetch/get?${origin}/hello`)).text, /^rc=0 status=200 /, 'next request fine');
    });
  });
});

t.test('self-requests: a path is served by the same server, no socket; a loop ends with an error', async (t) => {
  if (!kvmAvailable(t)) return;
  await withOrigin(async (origin) => {
    await withFetchServer(origin, async (s) => {
      const self = await get(s, '/fetch/get?/echo/x');
      t.match(self.text, /^rc=0 status=200 ctype=text\/plain len=\d+\nbody=method=GET\nurl=\/echo\/x\n/, 'req-echo answered the self-request');
      t.match((await get(s, '/fetch/get?/nowhere')).text, /^rc=0 status=404 /, 'a path no program serves: 404');
      const before = await globals(s);
      const started = performance.now();
      const loop = await get(s, '/fetch/self?x');
      t.comment(loop.text);
      t.equal(loop.status, 200, 'the loop ends with an answer');
      t.ok(performance.now() - started < 10_000, 'soon');
      t.match(loop.text, /^rc=0 status=200 .*body=rc=/s, 'each level reports the level below it');
      t.match(loop.text, /rc=-\d+/, 'and the deepest one got an error');
      const after = await globals(s);
      t.ok(after.self_requests > before.self_requests, `self_requests counted (${after.self_requests})`);
    });
  });
});

t.test('embedded (Program, no server): no self-requests; fetch_origins still applies', async (t) => {
  if (!kvmAvailable(t)) return;
  await withOrigin(async (origin) => {
    const program = await Program.load(guestPath('req-fetch'), { concurrency: 1, fetchOrigins: [origin] });
    try {
      const self = await program.request({ url: '/get', arg: '/echo/x' });
      t.match(self.body.toString(), /^rc=-7 /, 'a self-request needs a server');
      const out = await program.request({ url: '/get', arg: `${origin}/hello` });
      t.match(out.body.toString(), /^rc=0 status=200 .*body=hello from the origin/s, 'an allowed origin');
    } finally {
      await program.close();
    }
  });
});

t.test('during main(): what the program fetched before wait_for_requests is in the frozen program', async (t) => {
  if (!kvmAvailable(t)) return;
  await withOrigin(async (origin, seen) => {
    const program = await Program.load(guestPath('req-fetch'), { concurrency: 2, fetchOrigins: [origin], environment: [`FETCH_AT_START=${origin}/hello`] });
    try {
      t.equal(seen.filter((r) => r.url === '/hello').length, 1, 'main() fetched once, before any request');
      for (let i = 0; i < 3; i++) {
        const res = await program.request({ url: '/boot' });
        t.match(res.body.toString(), /^rc=0 status=200 ctype=text\/x-greeting len=21\nbody=hello from the origin\n/, `request ${i + 1}: the body main() fetched`);
      }
      t.equal(seen.length, 1, 'and the requests fetched nothing');
    } finally {
      await program.close();
    }
    const refused = await Program.load(guestPath('req-fetch'), { concurrency: 1, environment: [`FETCH_AT_START=${origin}/hello`] });
    try {
      t.match((await refused.request({ url: '/boot' })).body.toString(), /^rc=-9 /, 'fetch_origins holds during main() too');
    } finally {
      await refused.close();
    }
  });
});
