/**
 * One library program's life in the server: not loaded, starting, running, or failed and waiting to
 * be retried.
 *
 *   idle ──acquire──► starting ──ok──► running ──invalidate──► idle
 *                        │                │  ▲     (the old Program finishes its requests, then closes)
 *                        │                └──┘ update(new ELF): the new one boots first, then replaces it
 *                        └─fail──► failed ──acquire after the backoff──► starting
 *
 * Requests that arrive while the program starts wait for that one start. A failed start is reported
 * to every request until its backoff ends (1 s, 2 s, 4 s … 30 s), so that a broken program costs one
 * boot attempt per backoff, not one per request.
 */
import { readFile } from 'node:fs/promises';
import { readProgramFile, TskvmError } from '../errors.js';
import { Program } from '../runtime/program.js';
import { resolveProgramOptions, type ProgramOptions } from '../runtime/program-options.js';
import { fetchToCache, sha256Hex } from './fetch-cache.js';
import type { LibraryProgram } from './library.js';

const FIRST_BACKOFF_S = 1;
const MAX_BACKOFF_S = 30;

export type SlotState = 'idle' | 'starting' | 'running' | 'failed' | 'closed';

export class ProgramSlot {
  readonly entry: LibraryProgram;
  private program: Program | null = null;
  private starting: Promise<Program> | null = null;
  private failure: { error: TskvmError; attempts: number; retryAt: number } | null = null;
  /** Bumped by invalidate(): a start that began before it must not install its Program. */
  private generation = 0;
  private closed = false;
  /** Programs installed by update() (the admin endpoint, live updates): the stats' live_updates. */
  updates = 0;
  private readonly load: (entry: LibraryProgram) => Promise<Program>;
  private readonly onStartFailure: (error: TskvmError) => void;

  /** What the program gets from the server: its self-requests served, its fetches counted. */
  private readonly programHooks: ProgramHooks;

  /** `load` boots the program (tests replace it); `onStartFailure` hears of each failed start once. */
  constructor(entry: LibraryProgram, hooks: { load?: (entry: LibraryProgram) => Promise<Program>; onStartFailure?: (error: TskvmError) => void; program?: ProgramHooks } = {}) {
    this.entry = entry;
    this.programHooks = hooks.program ?? {};
    this.load = hooks.load ?? ((e) => loadProgram(e, this.programHooks));
    this.onStartFailure = hooks.onStartFailure ?? (() => {});
  }

  get state(): SlotState {
    if (this.closed) return 'closed';
    if (this.program) return 'running';
    if (this.starting) return 'starting';
    return this.failure ? 'failed' : 'idle';
  }

  /** The running Program, if any (for statistics). */
  get current(): Program | null {
    return this.program;
  }

  /** Why the last start failed, and in how many seconds the next one may happen. */
  get lastFailure(): { message: string; code: string; retryIn: number } | null {
    if (!this.failure) return null;
    const { error, retryAt } = this.failure;
    return { message: error.message, code: error.code, retryIn: Math.max(0, (retryAt - Date.now()) / 1000) };
  }

  /**
   * The running Program, starting it if needed. Rejects with TSKVM_ERR_PROGRAM_START (details:
   * `retryAfter` in seconds) while a failed start's backoff lasts, and TSKVM_ERR_CLOSED once closed.
   */
  acquire(): Promise<Program> {
    if (this.closed) return Promise.reject(new TskvmError('TSKVM_ERR_CLOSED', `program ${this.entry.name}: the server is shutting down`));
    if (this.program) return Promise.resolve(this.program);
    if (this.starting) return this.starting;
    if (this.failure && Date.now() < this.failure.retryAt) return Promise.reject(this.startError());
    return this.start();
  }

  private start(): Promise<Program> {
    const generation = this.generation;
    this.starting = (async () => {
      try {
        const program = await this.load(this.entry);
        if (generation !== this.generation || this.closed) {
          await program.close();
          throw new TskvmError('TSKVM_ERR_CLOSED', `program ${this.entry.name} was unloaded while it started`);
        }
        this.program = program;
        this.failure = null;
        return program;
      } catch (e) {
        if (generation !== this.generation || this.closed || (e as TskvmError).code === 'TSKVM_ERR_CLOSED') throw e;
        const error = e instanceof TskvmError ? e : new TskvmError('TSKVM_ERR_PROGRAM_INIT', (e as Error).message);
        const attempts = (this.failure?.attempts ?? 0) + 1;
        const backoff = Math.min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempts - 1));
        this.failure = { error, attempts, retryAt: Date.now() + backoff * 1000 };
        const reported = this.startError();
        this.onStartFailure(reported);
        throw reported;
      } finally {
        if (generation === this.generation) this.starting = null;
      }
    })();
    return this.starting;
  }

  private startError(): TskvmError {
    const f = this.lastFailure!;
    const retryAfter = Math.max(1, Math.ceil(f.retryIn));
    return new TskvmError('TSKVM_ERR_PROGRAM_START', `program ${this.entry.name} failed to start [${f.code}]: ${f.message} (next attempt in ${retryAfter} s)`, { retryAfter });
  }

  /** Unloads the program: the next acquire() starts it afresh, without backoff. Requests already running finish first. */
  async invalidate(): Promise<void> {
    this.generation++;
    const old = this.program;
    this.program = null;
    this.starting = null;
    this.failure = null;
    await old?.close();
  }

  /**
   * Live update: boots `file` (an ELF or an archive, as a library's) as this program and, once it
   * has initialised, puts it in place of the running one, whose requests finish on it. If the new
   * one fails to start, nothing changes and the error says why. The update lives in memory: an
   * invalidation reloads the library's file.
   */
  async update(file: Buffer): Promise<void> {
    if (this.closed) throw new TskvmError('TSKVM_ERR_CLOSED', `program ${this.entry.name}: the server is shutting down`);
    const next = await Program.fromBytes(file, this.entry.path, resolveProgramOptions(this.entry.path, this.entry.options), this.programHooks);
    try {
      if (this.closed) throw new TskvmError('TSKVM_ERR_CLOSED', `program ${this.entry.name}: the server is shutting down`);
      await this.program?.handStorageTo(next);
    } catch (e) {
      await next.close();
      throw e;
    }
    this.generation++;
    this.updates++;
    const old = this.program;
    this.program = next;
    this.starting = null;
    this.failure = null;
    await old?.close();
  }

  /** For shutdown: refuses new requests and closes the program once its requests are done. */
  async close(): Promise<void> {
    this.closed = true;
    await this.starting?.catch(() => undefined);
    await this.invalidate();
  }
}

/** The main-thread functions a Program may be given (ProgramOptions'). */
type ProgramHooks = Pick<ProgramOptions, 'selfRequest' | 'onFetch'>;

/** Reads the program's file (an ELF, or an archive: Program.fromBytes) and boots it. */
async function loadProgram(entry: LibraryProgram, hooks: ProgramHooks): Promise<Program> {
  return Program.fromBytes(await programBytes(entry), entry.path, resolveProgramOptions(entry.path, entry.options), hooks);
}

/** The program file's bytes, as they are (an archive is unpacked by Program.fromBytes): read, or fetched into its copy first when it comes from a URL; its digest checked. */
export async function programBytes(entry: Pick<LibraryProgram, 'name' | 'path' | 'url' | 'sha256'>): Promise<Buffer> {
  // A local copy that already has the pinned digest is the program: no download (the VMOD does the same).
  const pinned = entry.url && entry.sha256 ? await readFile(entry.path).then((b) => (sha256Hex(b) === entry.sha256 ? b : null), () => null) : null;
  const file = pinned ?? (entry.url
    ? await fetchToCache(entry.url, entry.path, (m) => process.stderr.write(`tskvm: program ${entry.name}: ${m}\n`))
    : await readProgramFile(entry.path));
  if (entry.sha256) {
    const actual = sha256Hex(file);
    if (actual !== entry.sha256) {
      throw new TskvmError('TSKVM_ERR_PROGRAM_CHECKSUM', `${entry.path} has sha256 ${actual}, the library says ${entry.sha256}`);
    }
  }
  return file;
}
