/**
 * The tskvm modes of `tskvm bench`, timed from this process the way a user of each sees them:
 *
 *   tskvm-ephemeral   Program.request() with the library's settings and `ephemeral: true`: every
 *                     request in a fork reset afterwards
 *   tskvm-persistent  the same with `ephemeral: false`: the fork keeps its state between requests
 *   tskvm-http        a `tskvm serve` child process on the same library, over one keep-alive
 *                     connection (undici)
 *
 * Requests go one at a time (latency, not throughput under load: bench/serve-load.mjs does that), to
 * a program with one fork, so that the warm-up requests have warmed the fork that is measured (its
 * first requests pay the shadow page tables' first-touch faults).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import { TskvmError } from '../errors.js';
import { Program } from '../runtime/program.js';
import type { BenchCase } from './cases.js';

export interface TskvmRun {
  samples: number[];
  /** Time inside the VM per request, µs (the API modes). */
  vmSamples?: number[];
  /** The last response. */
  status: number;
  output: Buffer;
  error?: string;
}

function requestOf(c: BenchCase): Parameters<Program['request']>[0] {
  return { method: c.method, url: c.url, arg: c.arg, headers: c.headers, contentType: c.contentType, body: c.body ?? undefined };
}

/** Sequential requests through the embedding API. */
export async function runProgram(c: BenchCase, ephemeral: boolean): Promise<TskvmRun> {
  const program = await Program.load(c.program.path, { ...c.program.options, ephemeral, concurrency: 1, onLog: () => {} });
  try {
    const samples: number[] = [];
    const vmSamples: number[] = [];
    let last = null;
    for (let i = 0; i < c.warmup + c.requests; i++) {
      const t0 = performance.now();
      last = await program.request(requestOf(c));
      const us = (performance.now() - t0) * 1000;
      if (last.error) return { samples, status: last.status, output: last.body, error: `request ${i + 1} failed [${last.error.code}]: ${last.error.message}` };
      if (i >= c.warmup) {
        samples.push(us);
        vmSamples.push(last.timeMs * 1000);
      }
    }
    return { samples, vmSamples, status: last!.status, output: last!.body };
  } finally {
    await program.close();
  }
}

/** A `tskvm serve` child process on the library, for the HTTP mode. */
export class ServeProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    private readonly client: Client,
  ) {}

  /** `configure`: `NAME=JSON` settings for `--configure`, one each. */
  static async start(libraryFile: string, configure: string[] = []): Promise<ServeProcess> {
    const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));
    const args = [cli, 'serve', '--library', libraryFile, '--listen', '127.0.0.1:0', ...configure.flatMap((c) => ['--configure', c])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.resume(); // the access log, one line per request: read and dropped
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (chunk: string) => {
        stderr += chunk;
        const m = /listening on (http:\/\/\S+)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new TskvmError('TSKVM_ERR_BENCH', `tskvm serve exited with ${code}: ${stderr.trim()}`)));
    });
    return new ServeProcess(child, url, new Client(url, { pipelining: 1 }));
  }

  async run(c: BenchCase): Promise<TskvmRun> {
    const samples: number[] = [];
    let status = 0;
    let output = Buffer.alloc(0);
    for (let i = 0; i < c.warmup + c.requests; i++) {
      const t0 = performance.now();
      const headers: Record<string, string> = {};
      for (const h of c.headers) headers[h.slice(0, h.indexOf(':')).trim()] = h.slice(h.indexOf(':') + 1).trim();
      if (c.contentType) headers['content-type'] = c.contentType;
      const res = await this.client.request({ method: c.method as 'GET', path: c.url, headers, body: c.body ?? undefined });
      output = Buffer.from(await res.body.arrayBuffer());
      status = res.statusCode;
      if (i >= c.warmup) samples.push((performance.now() - t0) * 1000);
      if (status >= 500) return { samples, status, output, error: `request ${i + 1}: HTTP ${status}: ${output.toString('utf8', 0, 200).trim()}` };
    }
    return { samples, status, output };
  }

  async stop(): Promise<void> {
    await this.client.close();
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
  }
}
