// The sqlite and lua examples (guest/examples/{sqlite,lua}.c) answer under tskvm exactly what they print
// natively for the same input, including their error answers, and the host's limits stop the scripts
// that never end or allocate without bound, without harm to the next request.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Program } from '../src/index.js';
import { kvmAvailable, repoRoot, runNative } from './helpers/differential.js';

const examples = join(repoRoot, 'guest', 'examples');
const example = (name: string): string => {
  const path = join(examples, 'bin', name);
  if (!existsSync(path)) throw new Error(`${path} is missing: build the examples with \`make -C guest/examples\``);
  return path;
};
const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Exit status of the native sqlite for each HTTP status it answers. */
const sqliteExit: Record<number, number> = { 200: 0, 400: 1, 403: 3 };

t.test('sqlite: read-only queries against a database given through allowed_paths', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-sqlite-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, 'demo.db');
  const built = runNative(example('sqlite'), ['--create', db], { input: readFileSync(join(examples, 'inputs', 'make-db.sql')) });
  t.equal(built.status, 0, `the demo database is built natively ${built.stderr.toString()}`);
  const again = join(dir, 'again.db');
  runNative(example('sqlite'), ['--create', again], { input: readFileSync(join(examples, 'inputs', 'make-db.sql')) });
  t.equal(sha256(again), sha256(db), 'the database is built deterministically');
  const before = sha256(db);

  const logs: string[] = [];
  const options = { maxMemory: 64, maxRequestMemory: 16, maxRequestTime: 2, allowedPaths: [db], onLog: (l: string) => logs.push(l) };
  const program = await Program.load(example('sqlite'), { ...options, mainArguments: [db] });
  const immutable = await Program.load(example('sqlite'), { ...options, mainArguments: [db, '--immutable'] });
  try {
    const cases: Array<[string, number]> = [
      ['SELECT * FROM planets ORDER BY id', 200],
      ['SELECT p.name, count(m.id) AS moons, max(m.radius_km) FROM planets p LEFT JOIN moons m ON m.planet_id = p.id GROUP BY p.id ORDER BY moons DESC, p.name', 200],
      ['SELECT name, note FROM planets WHERE note IS NOT NULL', 200],
      ['SELECT * FROM blobs', 200],
      ['SELECT count(*), sum(lcg), avg(square), min(word), max(word) FROM numbers', 200],
      ['SELECT * FROM numbers WHERE lcg < 1000000 ORDER BY lcg', 200],
      ['SELECT 1.0 / 3, 1e308 * 10, 0.1, -2.5e-300, 9007199254740993, \'tab\there\', NULL  -- a comment\n;', 200],
      ['SELECT * FROM planets WHERE 0', 200],
      ['SELEC name FROM planets', 400],
      ['SELECT nope FROM planets', 400],
      ['SELECT * FROM no_such_table', 400],
      ['SELECT abs(-9223372036854775807 - 1)', 400],
      ['SELECT 1; SELECT 2', 400],
      ['', 400],
      ["ATTACH 'other.db' AS other", 400],
      ["INSERT INTO planets (name, kind, mass_earths, radius_km, orbit_days, rings) VALUES ('Pluto', 'dwarf', 0.0022, 1188.3, 90560, 0)", 403],
      ['UPDATE planets SET rings = 1', 403],
      ['DELETE FROM numbers', 403],
      ['DROP TABLE moons', 403],
      ['CREATE TABLE t (x)', 403],
      ['PRAGMA journal_mode = WAL', 403],
      ['SELECT count(*) FROM moons', 200],
    ];
    for (const [query, status] of cases) {
      for (const [mode, p] of [['', program], [' (immutable)', immutable]] as const) {
        const native = runNative(example('sqlite'), mode ? [db, '--immutable'] : [db], { input: query });
        const res = await p.request({ method: 'POST', url: '/', body: query });
        const what = JSON.stringify(query.slice(0, 40)) + mode;
        t.equal(res.status, status, `${what}: status`);
        t.equal(res.contentType, 'application/json');
        t.equal(res.body.toString(), native.stdout.toString(), `${what}: the same body as natively`);
        t.equal(native.status, sqliteExit[status], `${what}: native exit status`);
        const json = JSON.parse(res.body.toString()) as { columns?: string[]; rows?: unknown[][]; error?: string };
        if (status === 200) t.ok(json.rows!.every((row) => row.length === json.columns!.length), `${what}: rows as arrays of the columns`);
        else t.type(json.error, 'string', `${what}: an error message`);
      }
    }

    const planets = JSON.parse((await program.request({ method: 'POST', url: '/', body: 'SELECT name, mass_earths, note FROM planets WHERE id IN (3, 6, 8) ORDER BY id' })).body.toString());
    t.same(planets, {
      columns: ['name', 'mass_earths', 'note'],
      rows: [['Earth', 1, 'home'], ['Saturn', 95.2, 'rings of ice\nand rock'], ['Neptune', 17.1, 'Ünsichtbar für das Auge']],
    }, 'values of every type decode as JSON');
    t.same(JSON.parse((await program.request({ method: 'POST', url: '/', body: 'SELECT * FROM blobs' })).body.toString()).rows,
      [[1, { blob: '00017f80ff' }], [2, { blob: '00000000' }], [3, null]], 'blobs as hex');
    t.match((await program.request({ method: 'POST', url: '/', body: 'SELEC 1' })).body.toString(), /syntax error/);

    const viaArg = await program.request({ method: 'GET', url: '/', arg: 'SELECT name FROM planets WHERE id = 4' });
    t.equal(viaArg.body.toString(), '{"columns":["name"],"rows":[["Mars"]]}\n', 'the query in arg when the body is empty');

    const huge = await program.request({ method: 'POST', url: '/', body: 'SELECT length(group_concat(a.word)) FROM numbers a, numbers b WHERE b.n < 300' });
    t.same([huge.status, huge.body.toString()], [400, '{"error":"out of memory"}\n'], 'SQLite runs out of its heap (a little below max_request_memory): 400');
    const endless = await program.request({ method: 'POST', url: '/', body: 'WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT max(i) FROM r' });
    t.equal(endless.status, 504, 'an endless query is stopped by max_request_time');
    t.equal(endless.error?.code, 'TSKVM_ERR_GUEST_TIMEOUT');
    const after = await program.request({ method: 'POST', url: '/', body: 'SELECT count(*) FROM numbers' });
    t.same([after.status, after.body.toString()], [200, '{"columns":["count(*)"],"rows":[[10000]]}\n'], 'the next request after the failures is answered');
  } finally {
    await Promise.all([program.close(), immutable.close()]);
  }
  t.equal(sha256(db), before, 'the database file is unchanged');
  t.same(logs, [], 'nothing logged');
});

t.test('lua: each script in a fresh interpreter, output as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const lua = example('lua');
  const program = await Program.load(lua, { maxMemory: 64, maxRequestMemory: 32, maxRequestTime: 1, onLog: () => {} });
  const run = (body: string | Buffer) => program.request({ method: 'POST', url: '/', body });
  try {
    const scripts: Array<[string, string | Buffer, number]> = [
      ['a 10-line script with string ops and a loop', [
        'local words = {}',
        'for word in ("the quick brown fox jumps over the lazy dog"):gmatch("%a+") do',
        '  words[#words + 1] = word:sub(1, 1):upper() .. word:sub(2)',
        'end',
        'table.sort(words)',
        'local counts = {}',
        'for _, w in ipairs(words) do counts[#w] = (counts[#w] or 0) + 1 end',
        'print(table.concat(words, " "), #words)',
        'print(string.format("%5.2f|%-6s|%q", math.pi, "ab", "x\\ny"), utf8.char(233, 0x4e2d), 7 // 2, 7 / 2, 2^53)',
        'return counts[3], counts[4], counts[5], string.rep("ab", 3, ",")',
      ].join('\n'), 200],
      ['print and return values', 'print("hi", 1, nil, true, 2.5) return 1, "x", nil', 200],
      ['no output', 'local x = 1', 200],
      ['coroutines and pcall', 'local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end) print(co(1), co(10)) return pcall(error, "caught", 0)', 200],
      ['load of text', 'return load("return 6 * 7")()', 200],
      ['only the safe libraries', 'return io, os, package, debug, require, dofile, loadfile, type(string), type(math), type(table), type(utf8)', 200],
      ['a syntax error', 'local x = = 1', 400],
      ['an unfinished block', 'for i = 1, 3 do print(i)', 400],
      ['a runtime error', 'local t = nil\nprint("before")\nreturn t.field', 400],
      ['error with a string', 'error("boom", 0)', 400],
      ['error with a table', 'error({ code = 1 })', 400],
      ['arithmetic on a string', 'return {} + 1', 400],
      ['bytecode is refused', Buffer.concat([Buffer.from('\x1bLua'), Buffer.from([0x54, 0, 0x19, 0x93, 13, 10, 0x1a, 10])]), 400],
      ['a huge string', 'return string.rep("x", 1e10)', 400],
      ['an allocation without bound', "local t = {} while true do t[#t + 1] = string.rep('x', 1e6) end", 400],
    ];
    for (const [what, script, status] of scripts) {
      const native = runNative(lua, [], { input: script });
      const res = await run(script);
      t.equal(res.status, status, `${what}: status`);
      t.equal(res.contentType, 'text/plain');
      t.equal(res.body.toString(), native.stdout.toString(), `${what}: the same body as natively`);
      t.equal(native.status, status === 200 ? 0 : 1, `${what}: native exit status`);
    }
    t.equal((await run(scripts[0]![1])).body.toString(), 'Brown Dog Fox Jumps Lazy Over Quick The The\t9\n 3.14|ab    |"x\\\ny"\té中\t3\t3.5\t9.007199254741e+15\n4\t2\t3\tab,ab,ab\n');
    t.equal((await run('local t = nil\nprint("before")\nreturn t.field')).body.toString(), "script:3: attempt to index a nil value (local 't')\n");
    t.equal((await run('return io, os, package, debug, require, dofile, loadfile')).body.toString(), 'nil\tnil\tnil\tnil\tnil\tnil\tnil\n');
    t.match((await run(scripts[12]![1])).body.toString(), /attempt to load a binary chunk/);
    t.equal((await program.request({ method: 'GET', url: '/', arg: 'return 6 * 7' })).body.toString(), '42\n', 'the script in arg when the body is empty');

    // Unbounded allocation: the Lua heap is capped at 3/4 of max_request_memory (from get_meminfo), so the
    // allocator fails and Lua raises "not enough memory" (400) before the host's limit refuses memory.
    const oom = await run("local t = {} while true do t[#t + 1] = string.rep('x', 1e6) end");
    t.same([oom.status, oom.body.toString(), oom.error], [400, 'not enough memory\n', undefined], 'unbounded allocation: a Lua memory error, 400');
    const held = Number((await run("local t = {} local ok, e = pcall(function() while true do t[#t + 1] = string.rep('x', 1e6) end end) return #t")).body.toString());
    t.ok(held >= 16 && held < 32, `the heap holds ${held} MB when allocation fails: below max_request_memory (32 MiB)`);
    t.equal((await run('return "after oom"')).body.toString(), 'after oom\n', 'the next request after running out of memory');

    const forever = await run('while true do end');
    t.equal(forever.status, 504, 'an endless loop is stopped by max_request_time');
    t.equal(forever.error?.code, 'TSKVM_ERR_GUEST_TIMEOUT');
    t.equal((await run('return "after timeout"')).body.toString(), 'after timeout\n', 'the next request after a timeout');

    t.equal((await run('leaked = "from an earlier request" return leaked')).body.toString(), 'from an earlier request\n');
    t.equal((await run('return leaked')).body.toString(), 'nil\n', 'a global of one request is not seen by the next');
  } finally {
    await program.close();
  }
});

t.test('lua: a fresh state per request even when the VM is not reset', async (t) => {
  if (!kvmAvailable(t)) return;
  const program = await Program.load(example('lua'), { maxMemory: 64, ephemeral: false, concurrency: 1, onLog: () => {} });
  try {
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push((await program.request({ method: 'POST', url: '/', body: 'n = (n or 0) + 1 string.counter = (string.counter or 0) + 1 return n, string.counter' })).body.toString());
    t.same(answers, ['1\t1\n', '1\t1\n', '1\t1\n'], 'globals and library tables start afresh');
  } finally {
    await program.close();
  }
});
