#!/usr/bin/env node
/**
 * The `tskvm` command.
 *
 *   tskvm run [--allow P] [--allow-write P] [--symlink LINK=TARGET] [--env K=V] [--max-memory MiB] [--address-space MiB] [--remap ADDR:MiB[:exec]] [--timeout S] [--trace] [--executable-heap] [--no-system-libs] ELF [ARGS…]
 *   tskvm run --request METHOD URL [--body FILE] [--header 'K: V'] [--arg ARG] [options] ELF [ARGS…]
 *   tskvm serve --library FILE [--listen HOST:PORT] [--unix PATH] [--admin-token-file F | --admin-token T] [--configure NAME=JSON]…
 *   tskvm platform [--json]
 *   tskvm bench [--cases FILE] [--program NAME]… [--requests N] [--warmup N] [--mode MODE]… [--json] [--chart FILE.svg] [--report FILE]
 *
 * With --request, the program is one that serves requests (docs/GUEST_ABI.md): it
 * boots until wait_for_requests, is frozen, and one request runs in a fork of
 * it. The response body goes to stdout, the status line and headers to stderr;
 * the exit status is 0 for a 1xx–3xx response and 1 otherwise.
 *
 * `run` behaves like running the program natively: its stdin, stdout and stderr
 * are ours, and our exit status is its exit status (128+signal when it died of
 * one). tskvm's own messages start with "tskvm:" and go to stderr. A dynamically linked
 * program may also read the system's loader and libraries (SYSTEM_LIBRARY_PATHS), unless
 * --no-system-libs.
 *
 * `serve` runs the HTTP compute server (src/server/) until SIGTERM or SIGINT, then lets running
 * requests finish (10 s at most), closes every program and exits 0. The access log goes to stdout.
 *
 * `bench` times the example programs (or those of another cases file) natively and in tskvm, side by
 * side (src/bench/). The report goes to stdout (--json: the results as JSON), progress to stderr; the
 * exit status is 1 when a mode failed or answered differently from the native program.
 */
import { readFileSync, realpathSync, writeFileSync, writeSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODES, type Mode } from '../bench/cases.js';
import { chartSvg } from '../bench/chart.js';
import { runBench, type BenchOptions } from '../bench/harness.js';
import { failures, textReport } from '../bench/report.js';
import { readProgramFileSync, TskvmError } from '../errors.js';
import { TR_AVAILABLE } from '../hypervisor/cpu-setup.js';
import { Machine } from '../hypervisor/machine.js';
import { SYSTEM_LIBRARY_PATHS, systemLibraryPaths } from '../hypervisor/interpreter.js';
import { elfInterpreter } from '../elf/parse-elf.js';
import { platform } from '../hypervisor/platform.js';
import { bootProgram } from '../runtime/frozen-program.js';
import { STREAM_PIECE } from '../runtime/program.js';
import { resolveProgramOptions, type RemapOption } from '../runtime/program-options.js';
import { RequestVm } from '../runtime/request-vm.js';
import { parseConfigure } from '../server/library.js';
import { startServer, type ServerOptions } from '../server/server.js';
import { EmptyFile, SinkFile } from '../syscalls/open-files/memory-file.js';
import type { AllowedPath } from '../syscalls/path-policy.js';

const USAGE = `usage: tskvm run [options] ELF [ARGS...]
       tskvm serve --library FILE [serve options]
       tskvm bench [bench options]
       tskvm platform [--json]

Runs an x86-64 Linux program in a KVM micro-VM.

options:
  --allow PATH        let the program read PATH (a file or a directory tree)
  --allow-write PATH  let the program read and write PATH
  --symlink LINK=TARGET  show the program a symlink at LINK with the text TARGET,
                      followed through what it may see (allowed_paths' "symlink")
  --env KEY=VALUE     add to the program's environment (it starts empty)
  --max-memory MIB    guest memory, address space included (default 1024)
  --address-space MIB a larger, sparse address space (up to 65536): the program may map
                      anywhere below it, and hold --max-memory MiB of mappings
  --remap ADDR:MIB[:exec]  memory at the fixed address ADDR (hex), above the address space:
                      Go's heap asks for 0xc000000000 first (repeatable; :exec lets code run there)
  --timeout SECONDS   stop the program after this long (exit status 124)
  --trace             print every syscall, strace-style, to stderr
  --executable-heap   let the program run code anywhere in its memory (JITs); by default
                      the stack, the heap and mappings are no-execute
  --no-system-libs    a dynamically linked program may not read the system's loader and
                      libraries (${SYSTEM_LIBRARY_PATHS.join(', ')}), read-only by default;
                      it then needs them from --allow
  --request METHOD URL  boot a program that serves requests and send it one
  --body FILE         the request body (- for stdin)
  --header 'K: V'     a request header (repeatable)
  --arg ARG           the request's arg
  --                  end of options

serve options:
  --library FILE      the program library (JSON)
  --listen HOST:PORT  TCP address (default 127.0.0.1:8080)
  --unix PATH         also listen on this Unix socket (admin endpoints need no token there)
  --admin-token-file F  token for the admin endpoints on TCP (Authorization: Bearer T), read from F
                      (or the TSKVM_ADMIN_TOKEN environment variable): unlike --admin-token T, not
                      visible in ps
  --configure NAME=JSON  settings merged over program NAME's (repeatable)
  --library-sha256 HEX  the digest a library from a URL must have
  --trust-http-library  let a library from plain http:// grant writable paths without a digest
  --max-connections N open connections (default 1024)
  --max-body MiB      largest request body (default 16)
  --max-buffered MiB  request and response bodies held in memory across the server (default 256):
                      past it, new requests get 503
  --client-timeout S  seconds a response may wait for its client to read it (default 30)

platform: which KVM this is and how guests enter and leave the host here (the start-up probe)

bench options (each example natively and in tskvm, side by side):
  --cases FILE        the cases file (default: the bundled guest/examples/bench.json)
  --program NAME      only this case or program (repeatable, or NAME,NAME)
  --requests N        timed requests per case and mode (default: the cases file's)
  --warmup N          untimed requests before them (default 5)
  --mode MODE         only this mode besides native-loop (repeatable): ${MODES.join(', ')}
  --json              print the results as JSON instead of the tables
  --chart FILE.svg    also write the SVG chart
  --report FILE       also write the printed report (tables or JSON) to FILE
`;

/** Exit statuses for failures of tskvm itself, as env(1) and shells use them. */
const EXIT_TSKVM_ERROR = 125;
const EXIT_CANNOT_EXECUTE = 126;
const EXIT_NOT_FOUND = 127;

function say(message: string): void {
  writeSync(2, `tskvm: ${message}\n`);
}

class UsageError extends Error {}

interface RunCommand {
  elf: string;
  args: string[];
  allowed: AllowedPath[];
  env: string[];
  maxMemoryMiB?: number;
  addressSpaceMiB?: number;
  remaps: RemapOption[];
  timeoutSec?: number;
  trace: boolean;
  executableHeap?: boolean;
  systemLibs: boolean;
  request?: { method: string; url: string; body?: string; headers: string[]; arg: string };
}

function parseRun(argv: string[]): RunCommand {
  const cmd: RunCommand = { elf: '', args: [], allowed: [], env: [], remaps: [], trace: false, systemLibs: true };
  let i = 0;
  const value = (flag: string): string => {
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  const number = (flag: string): number => positive(flag, value(flag));
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('--')) break;
    switch (a) {
      case '--allow': cmd.allowed.push({ real: value(a) }); break;
      case '--allow-write': cmd.allowed.push({ real: value(a), writable: true }); break;
      case '--symlink': {
        const link = value(a);
        const eq = link.indexOf('=');
        if (eq <= 0 || eq === link.length - 1) throw new UsageError(`--symlink needs LINK=TARGET, not "${link}"`);
        cmd.allowed.push({ real: link.slice(eq + 1), virtual: link.slice(0, eq), symlink: true });
        break;
      }
      case '--env': {
        const kv = value(a);
        if (!kv.includes('=')) throw new UsageError(`--env needs KEY=VALUE, not "${kv}"`);
        cmd.env.push(kv);
        break;
      }
      case '--max-memory': cmd.maxMemoryMiB = number(a); break;
      case '--address-space': cmd.addressSpaceMiB = number(a); break;
      case '--remap': cmd.remaps.push(remapFlag(a, value(a))); break;
      case '--timeout': cmd.timeoutSec = number(a); break;
      case '--trace': cmd.trace = true; break;
      case '--executable-heap': cmd.executableHeap = true; break;
      case '--no-system-libs': cmd.systemLibs = false; break;
      case '--request': cmd.request = { method: value(a), url: value(a), headers: [], arg: '', ...cmd.request }; break;
      case '--body': (cmd.request ??= { method: 'POST', url: '/', headers: [], arg: '' }).body = value(a); break;
      case '--header': {
        const h = value(a);
        if (!h.includes(':')) throw new UsageError(`--header needs "Key: value", not "${h}"`);
        (cmd.request ??= { method: 'GET', url: '/', headers: [], arg: '' }).headers.push(h);
        break;
      }
      case '--arg': (cmd.request ??= { method: 'GET', url: '/', headers: [], arg: '' }).arg = value(a); break;
      default: throw new UsageError(`unknown option ${a}`);
    }
  }
  const elf = argv[i];
  if (!elf) throw new UsageError('no program given');
  cmd.elf = elf;
  cmd.args = argv.slice(i + 1);
  return cmd;
}

/** What the program may read: --allow's paths, and the system's libraries for a dynamically linked one. */
function allowedFor(cmd: RunCommand, file: Uint8Array): AllowedPath[] {
  if (!cmd.systemLibs || elfInterpreter(file, cmd.elf) === null) return cmd.allowed;
  // The user's own entries first: at the same guest path, theirs (a writable one, say) wins.
  return [...cmd.allowed, ...systemLibraryPaths()];
}

/**
 * The guest starts where we are, as a native program would — when that
 * directory is visible to it at all; otherwise at /.
 */
function guestCwd(allowed: AllowedPath[]): string {
  const here = process.cwd();
  // A symlink's `real` is its text, not a host directory the guest could stand in.
  const inside = allowed.some((a) => {
    if (a.symlink) return false;
    try {
      const root = realpathSync(a.real);
      return here === root || here.startsWith(root.endsWith('/') ? root : root + '/');
    } catch {
      return false;
    }
  });
  return inside ? here : '/';
}

function run(argv: string[]): number {
  const cmd = parseRun(argv);
  if (cmd.request) return runRequest(cmd, cmd.request);
  const trace = cmd.trace ? (line: string) => writeSync(2, line + '\n') : null;
  const file = readProgramFileSync(cmd.elf);
  const allowed = allowedFor(cmd, file);
  const machine = new Machine(file, resolvePath(cmd.elf), {
    argv0: cmd.elf, args: cmd.args, env: cmd.env, allowed, cwd: guestCwd(allowed), maxMemoryMiB: cmd.maxMemoryMiB, timeoutSec: cmd.timeoutSec, trace,
    executableHeap: cmd.executableHeap, addressSpaceMiB: cmd.addressSpaceMiB, remaps: cmd.remaps,
  });
  try {
    const result = machine.run();
    if (trace) {
      writeSync(2, result.signal ? `+++ killed by signal ${result.signal} +++\n` : `+++ exited with ${result.status} +++\n`);
    }
    // A program that kills itself (abort) prints nothing natively either; faults and timeouts are ours to explain.
    if (result.message) say(result.message);
    if (result.outcome === 'pause') {
      say('the program is waiting for requests (wait_for_requests); send it one with --request METHOD URL');
      return 0;
    }
    return result.status;
  } finally {
    machine.close();
  }
}

/** Boots the program, forks one request VM and runs one request in it, all on this thread. */
function runRequest(cmd: RunCommand, req: NonNullable<RunCommand['request']>): number {
  const trace = cmd.trace ? (line: string) => writeSync(2, line + '\n') : null;
  const options = resolveProgramOptions(cmd.elf, { environment: cmd.env, mainArguments: cmd.args, maxRequestTime: cmd.timeoutSec });
  // The program's own stdout goes to our stderr: stdout carries the response body alone.
  const toStderr = () => (bytes: Uint8Array): void => { writeSync(2, bytes); };
  const warn = (m: string): void => say(m);
  const file = readProgramFileSync(cmd.elf);
  const allowed = allowedFor(cmd, file);
  const booted = bootProgram(file, resolvePath(cmd.elf), {
    argv0: cmd.elf, args: cmd.args, env: options.env, allowed, cwd: guestCwd(allowed),
    maxMemoryMiB: cmd.maxMemoryMiB ?? options.maxMemory, maxRequestMemoryMiB: options.maxRequestMemory,
    executableHeap: cmd.executableHeap, addressSpaceMiB: cmd.addressSpaceMiB, remaps: cmd.remaps,
    stdio: [new EmptyFile(), new SinkFile(toStderr(), 'stdout'), new SinkFile(toStderr(), 'stderr')],
    log: (line) => say(`log: ${line}`), warn, trace,
  });
  let fork: RequestVm | null = null;
  try {
    fork = new RequestVm(booted.frozen, {
      maxRequestTimeMs: options.maxRequestTime * 1000, maxWriteBytes: options.maxRequestWrite * 2 ** 20, ephemeral: true, output: toStderr, log: (line) => say(`log: ${line}`), warn, trace,
    });
    const body = req.body === undefined ? undefined : req.body === '-' ? readFileSync(0) : readFileSync(req.body);
    const contentType = req.headers.find((h) => /^content-type\s*:/i.test(h))?.replace(/^[^:]*:\s*/, '') ?? '';
    const { response, failure } = fork.request({ method: req.method, url: req.url, arg: req.arg, headers: req.headers, contentType, body });
    writeSync(2, `HTTP ${response.status}\ncontent-type: ${response.contentType}\n${response.headers.map((h) => h + '\n').join('')}\n`);
    if (failure) say(`request failed [${failure.code}]: ${failure.message}`);
    writeSync(1, response.body);
    // A streamed body, piece by piece, straight to stdout.
    for (let left = response.stream?.length ?? 0; left > 0;) {
      try {
        const piece = fork.streamChunk(STREAM_PIECE);
        writeSync(1, piece);
        left -= piece.length;
      } catch (e) {
        say(`streamed response failed [${(e as TskvmError).code}]: ${(e as Error).message}`);
        return 1;
      }
    }
    return response.status < 400 ? 0 : 1;
  } finally {
    fork?.close();
    booted.machine.close();
  }
}

/** Walks options of the form `--flag [value]`: `handle` gets each flag and a function that takes its value. */
function forEachFlag(argv: string[], handle: (flag: string, value: () => string) => void): void {
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    handle(flag, () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    });
  }
}

/** --remap ADDR:MIB[:exec]: ADDR in hex (0x optional). */
function remapFlag(flag: string, v: string): RemapOption {
  const m = /^(?:0x)?([0-9a-f]+):(\d+(?:\.\d+)?)(:exec)?$/i.exec(v);
  if (!m) throw new UsageError(`${flag} needs ADDR:MIB or ADDR:MIB:exec (ADDR in hex), not "${v}"`);
  return { address: Number.parseInt(m[1]!, 16), sizeMiB: Number(m[2]), executable: m[3] !== undefined };
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} needs a positive number, not "${v}"`);
  return n;
}

function parseServe(argv: string[]): ServerOptions & { library: string } {
  const options: ServerOptions & { library: string } = { library: '', configure: {} };
  forEachFlag(argv, (flag, value) => {
    switch (flag) {
      case '--library': options.library = value(); break;
      case '--listen': options.listen = value(); break;
      case '--unix': options.unix = value(); break;
      case '--admin-token': options.adminToken = value(); break;
      case '--admin-token-file': options.adminToken = readAdminToken(value()); break;
      case '--library-sha256': options.libraryTrust = { ...options.libraryTrust, sha256: value() }; break;
      case '--trust-http-library': options.libraryTrust = { ...options.libraryTrust, httpMayGrantWrites: true }; break;
      case '--max-connections': options.maxConnections = positive(flag, value()); break;
      case '--max-body': options.maxBodySize = positive(flag, value()) * 1024 * 1024; break;
      case '--max-buffered': options.maxBufferedBytes = positive(flag, value()) * 1024 * 1024; break;
      case '--client-timeout': options.clientTimeout = positive(flag, value()); break;
      case '--configure': {
        const [name, settings] = parseConfigure(value());
        options.configure![name] = { ...options.configure![name], ...settings };
        break;
      }
      default: throw new UsageError(`unknown option ${flag}`);
    }
  });
  if (!options.library) throw new UsageError('serve needs --library FILE');
  options.adminToken ??= process.env.TSKVM_ADMIN_TOKEN || undefined;
  return options;
}

/** The admin token from a file: its first line, which must not be empty. */
function readAdminToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read --admin-token-file ${path}: ${(e as Error).message}`);
  }
  const token = text.split('\n')[0]!.trim();
  if (!token) throw new UsageError(`--admin-token-file ${path} holds no token`);
  return token;
}

/** The bundled cases file, next to the package's example programs. */
const BUNDLED_CASES = fileURLToPath(new URL('../../guest/examples/bench.json', import.meta.url));

type BenchCommand = BenchOptions & { json: boolean; chart?: string; report?: string };

function parseBench(argv: string[]): BenchCommand {
  const options: BenchCommand = { cases: BUNDLED_CASES, json: false };
  const count = (flag: string, v: string, min: number): number => {
    if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`${flag} needs a whole number ≥ ${min}, not "${v}"`);
    return Number(v);
  };
  forEachFlag(argv, (flag, value) => {
    switch (flag) {
      case '--cases': options.cases = value(); break;
      case '--program': options.only = [...(options.only ?? []), ...value().split(',').filter(Boolean)]; break;
      case '--requests': options.requests = count(flag, value(), 1); break;
      case '--warmup': options.warmup = count(flag, value(), 0); break;
      case '--mode': {
        const m = value();
        if (!(MODES as readonly string[]).includes(m)) throw new UsageError(`unknown mode "${m}" (${MODES.join(', ')})`);
        options.modes = [...(options.modes ?? []), m as Mode];
        break;
      }
      case '--json': options.json = true; break;
      case '--chart': options.chart = value(); break;
      case '--report': options.report = value(); break;
      default: throw new UsageError(`unknown option ${flag}`);
    }
  });
  return options;
}

async function bench(argv: string[]): Promise<number> {
  const options = parseBench(argv);
  const result = await runBench({ ...options, progress: (line) => writeSync(2, `${line}\n`) });
  const report = options.json ? JSON.stringify(result, null, 2) + '\n' : textReport(result);
  writeSync(1, report);
  for (const [file, text] of [[options.report, report], [options.chart, options.chart && chartSvg(result)]]) {
    if (!file) continue;
    writeFileSync(file, text!);
    say(`written: ${file}`);
  }
  return failures(result).length ? 1 : 0;
}

async function serve(argv: string[]): Promise<number> {
  const server = await startServer(parseServe(argv));
  if (server.url) say(`listening on ${server.url}`);
  if (server.socketPath) say(`listening on unix:${server.socketPath}`);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  say(`${signal}: finishing running requests, then stopping`);
  await server.close();
  say('stopped');
  return 0;
}

/** What the start-up probe found: the same decision every Machine and request VM uses. */
function platformCommand(argv: string[]): number {
  const unknown = argv.find((a) => a !== '--json');
  if (unknown !== undefined) throw new UsageError(`platform: unknown option ${unknown}`);
  const p = platform();
  const text = argv.includes('--json')
    ? JSON.stringify(p)
    : [
      p.description,
      `syscall entry: ${p.syscallEntry}`,
      `wrfsbase in ring 3: ${p.fsgsbase ? 'yes' : 'no'}`,
      `no-execute pages: ${p.nx ? 'yes' : 'no'}`,
      `task register: ${p.taskRegister === TR_AVAILABLE ? 'available 64-bit TSS (type 9)' : 'busy 64-bit TSS (type 11)'}`,
      `kvm_pvm loaded: ${p.pvm ? 'yes' : 'no'}`,
    ].join('\n');
  writeSync(1, text + '\n');
  return 0;
}

function exitStatusFor(e: TskvmError): number {
  if (e.code === 'TSKVM_ERR_PROGRAM_NOT_FOUND') return EXIT_NOT_FOUND;
  if (e.code.startsWith('TSKVM_ERR_ELF_')) return EXIT_CANNOT_EXECUTE;
  return EXIT_TSKVM_ERROR;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run': return run(rest);
      case 'serve': return await serve(rest);
      case 'bench': return await bench(rest);
      case 'platform': return platformCommand(rest);
      case '--help': case '-h': case 'help':
        writeSync(1, USAGE);
        return 0;
      default:
        throw new UsageError(command ? `unknown command "${command}"` : 'no command given');
    }
  } catch (e) {
    if (e instanceof UsageError) {
      say(e.message);
      writeSync(2, USAGE);
      return 2;
    }
    if (e instanceof TskvmError) {
      say(`error [${e.code}]: ${e.message}`);
      return exitStatusFor(e);
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
