/**
 * A worker thread of the pool (DESIGN.md #7): it owns the main VMs it booted
 * and the request VMs it was given, and runs one of them at a time. KVM_RUN
 * blocks, so it happens here and never on the application's event loop.
 *
 * The thread does not use its own event loop: it sleeps in Atomics.wait on a
 * shared doorbell and drains its port with receiveMessageOnPort when the main
 * thread rings, so waking it costs a futex, not an event-loop turn. Replies go
 * back with postMessage. After a response is posted the fork is settled
 * (reset), so the reset is off the request's latency.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { TskvmError } from '../errors.js';
import { EmptyFile, SinkFile } from '../syscalls/fd-table.js';
import { bootProgram, type BootedProgram, type FrozenProgram } from './frozen-program.js';
import type { ResolvedProgramOptions } from './program-options.js';
import { RequestVm, type RequestInput } from './request-vm.js';
import { TRANSFER_MIN } from './worker-pool.js';

export type WorkerCommand =
  | { op: 'boot'; id: number; programId: number; file: Uint8Array; exePath: string; options: ResolvedProgramOptions }
  | { op: 'fork'; id: number; programId: number; forkId: number; frozen: FrozenProgram; options: ResolvedProgramOptions }
  | { op: 'request'; id: number; forkId: number; input: RequestInput }
  | { op: 'closeFork'; id: number; forkId: number }
  | { op: 'closeProgram'; id: number; programId: number }
  | { op: 'exit'; id: number };

export type WorkerReply =
  | { op: 'done'; id: number; value?: unknown }
  | { op: 'error'; id: number; error: { code: string; message: string; details?: unknown } }
  | { op: 'log'; programId: number; line: string };

interface WorkerInit {
  port: MessagePort;
  doorbell: SharedArrayBuffer;
}

const { port, doorbell } = workerData as WorkerInit;
const bell = new Int32Array(doorbell);
const programs = new Map<number, BootedProgram>();
const forks = new Map<number, RequestVm>();

function reply(message: WorkerReply): void {
  port.postMessage(message);
}

/** The program's output and logs, line by line, to the main thread (and stderr when echoing). */
function logger(programId: number, options: ResolvedProgramOptions): { line: (l: string) => void; output: (name: string) => (b: Uint8Array) => void; recent: string[] } {
  const recent: string[] = [];
  const line = (l: string): void => {
    recent.push(l);
    if (recent.length > 40) recent.shift();
    if (options.echo) process.stderr.write(`[${options.name}] ${l}\n`);
    reply({ op: 'log', programId, line: l });
  };
  const partial = new Map<string, string>();
  const output = (name: string) => (bytes: Uint8Array): void => {
    const text = (partial.get(name) ?? '') + Buffer.from(bytes).toString('utf8');
    const lines = text.split('\n');
    partial.set(name, lines.pop()!.slice(-4096));
    for (const l of lines) line(l);
  };
  return { line, output, recent };
}

function trace(options: ResolvedProgramOptions): ((l: string) => void) | null {
  return options.trace ? (l) => process.stderr.write(`[${options.name}] ${l}\n`) : null;
}

const warn = (name: string) => (m: string): void => {
  process.stderr.write(`tskvm [${name}]: ${m}\n`);
};

function handle(c: WorkerCommand): unknown {
  switch (c.op) {
    case 'boot': {
      const o = c.options;
      const log = logger(c.programId, o);
      const booted = bootProgram(c.file, c.exePath, {
        argv0: o.argv[0], args: o.argv.slice(1), env: o.env, allowed: o.allowed, cwd: o.cwd,
        maxMemoryMiB: o.maxMemory, sharedMemoryMiB: o.sharedMemory, maxRequestMemoryMiB: o.maxRequestMemory,
        requestMemoryUpperMiB: o.reqMemLimitAfterReset, controlEphemeral: o.controlEphemeral, executableHeap: o.executableHeap, maxBootTimeSec: o.maxBootTime,
        stdio: [new EmptyFile(), new SinkFile(log.output('stdout'), 'stdout'), new SinkFile(log.output('stderr'), 'stderr')],
        log: log.line, warn: warn(o.name), trace: trace(o), recentLog: () => log.recent,
      });
      programs.set(c.programId, booted);
      return {
        frozen: booted.frozen,
        binaryType: booted.image.kind,
        binarySize: c.file.length,
        bootTimeMs: booted.bootTimeMs,
      };
    }
    case 'fork': {
      const o = c.options;
      const log = logger(c.programId, o);
      forks.set(c.forkId, new RequestVm(c.frozen, {
        maxRequestTimeMs: o.maxRequestTime * 1000, ephemeral: o.ephemeral, output: log.output, log: log.line, warn: warn(o.name), trace: trace(o),
      }));
      return undefined;
    }
    case 'request': {
      const fork = forks.get(c.forkId);
      if (!fork) throw new TskvmError('TSKVM_ERR_CLOSED', `request VM ${c.forkId} is closed`);
      const result = fork.request(c.input);
      // A body with an ArrayBuffer of its own moves to the main thread: cloning would copy it twice.
      const body = result.response.body;
      const own = body.byteLength >= TRANSFER_MIN && body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
      port.postMessage({ op: 'done', id: c.id, value: { result, stats: fork.stats } } satisfies WorkerReply, own ? [body.buffer as ArrayBuffer] : []);
      fork.settle();
      return NO_REPLY;
    }
    case 'closeFork':
      forks.get(c.forkId)?.close();
      forks.delete(c.forkId);
      return undefined;
    case 'closeProgram':
      programs.get(c.programId)?.machine.close();
      programs.delete(c.programId);
      return undefined;
    case 'exit':
      for (const f of forks.values()) f.close();
      for (const p of programs.values()) p.machine.close();
      reply({ op: 'done', id: c.id });
      process.exit(0);
  }
}

const NO_REPLY = Symbol('no reply');

for (;;) {
  // No spinning before the wait: measured under load on 2 cores, a worker that spins takes the CPU
  // the main thread needs to hand it the next request (wrk: -15 % requests/s).
  Atomics.wait(bell, 0, 0);
  Atomics.store(bell, 0, 0);
  let received;
  while ((received = receiveMessageOnPort(port))) {
    const command = received.message as WorkerCommand;
    try {
      const value = handle(command);
      if (value !== NO_REPLY) reply({ op: 'done', id: command.id, value });
    } catch (e) {
      const error = e instanceof TskvmError
        ? { code: e.code, message: e.message, details: safeDetails(e.details) }
        : { code: 'TSKVM_ERR_INTERNAL', message: (e as Error)?.stack ?? String(e) };
      reply({ op: 'error', id: command.id, error });
    }
  }
}

/** Error details that survive structured cloning (no functions, no host objects). */
function safeDetails(details: Record<string, unknown>): unknown {
  try {
    return structuredClone(details);
  } catch {
    return undefined;
  }
}
