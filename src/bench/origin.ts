/**
 * A local HTTP origin for the `tskvm bench` cases that fetch (`"origin": true`, cases.ts) and for the
 * tests of programs that do: `GET /status/<n>` answers status n, any other `GET <path>` answers 200
 * `text/plain`, the path and a newline repeated to about 2 KiB — so every answer can be told apart and
 * checked.
 *
 * It runs on a thread of its own: the native modes run a program with spawnSync, which blocks the
 * calling thread's event loop while that program waits for this origin's answers.
 */
import { Worker } from 'node:worker_threads';

export interface Origin {
  /** `http://127.0.0.1:<port>` */
  url: string;
  stop(): Promise<void>;
}

const SERVER = `
const { createServer } = require('node:http');
const { parentPort } = require('node:worker_threads');
const server = createServer((req, res) => {
  const status = /^\\/status\\/(\\d{3})$/.exec(req.url);
  res.statusCode = status ? Number(status[1]) : 200;
  res.setHeader('content-type', 'text/plain');
  const line = req.url + '\\n';
  res.end(line.repeat(Math.max(1, Math.floor(2048 / line.length))));
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
parentPort.on('message', () => server.close(() => process.exit(0)));
`;

export async function startOrigin(): Promise<Origin> {
  const worker = new Worker(SERVER, { eval: true });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.postMessage('stop');
      await exited;
    },
  };
}
