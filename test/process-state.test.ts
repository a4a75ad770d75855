// One list of what a guest can change in its process (src/syscalls/process-state.ts): every field of
// a Process is in a piece of it or fixed for the process's life, so a new field cannot be left out
// of the reset; and saving then restoring each piece undoes what a request changed.
import t from 'tap';
import { tmpdir } from 'node:os';
import { GuestMemory } from '../src/paging/guest-memory.js';
import { USER_START } from '../src/paging/layout.js';
import { AddressSpace } from '../src/syscalls/address-space.js';
import { FileTable } from '../src/syscalls/fd-table.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { PathPolicy } from '../src/syscalls/path-policy.js';
import { Process } from '../src/syscalls/process.js';
import { PROCESS_FIXED, processState } from '../src/syscalls/process-state.js';
import { SignalState } from '../src/syscalls/signal-state.js';

function newProcess(): Process {
  return new Process({
    mem: new GuestMemory(new ArrayBuffer(16 << 20), 0n),
    files: new FileTable([new EmptyFile(), new SinkFile(() => {}), new SinkFile(() => {})]),
    paths: new PathPolicy({ allowed: [{ real: tmpdir() }], cwd: '/', exe: { hostPath: process.execPath, guestPath: '/app/program' } }),
    mm: new AddressSpace({ userStart: USER_START, end: 16 << 20, imageStart: USER_START, brkStart: 8 << 20, stackTop: 16 << 20, stackSize: 1 << 20, stackGuard: 4096, release: () => {} }),
    signals: new SignalState(), argv: [], env: [], trace: null, warn: () => {},
  });
}

t.test('every field of a Process is in one piece of the state, or fixed', async (t) => {
  const p = newProcess();
  const pieces = processState(p);
  const covered = pieces.flatMap((piece) => piece.fields as string[]);
  t.same(covered.filter((f, i) => covered.indexOf(f) !== i), [], 'no field in two pieces');
  const fixed = PROCESS_FIXED as readonly string[];
  t.same(covered.filter((f) => fixed.includes(f)), [], 'no fixed field in a piece');
  const unplaced = Object.keys(p).filter((field) => !covered.includes(field) && !fixed.includes(field));
  t.same(unplaced, [], 'no field of Process is left out (add it to a piece, or to PROCESS_FIXED if no request can change it)');
  t.same([...covered, ...fixed].filter((f) => !(f in p)), [], 'and each named field exists');
});

t.test('restoring the saved pieces undoes what a request changed', async (t) => {
  const p = newProcess();
  const pieces = processState(p);
  const saved = pieces.map((piece) => piece.save());
  const before = JSON.stringify({ fds: p.files.openFds(), cwd: p.paths.cwd, umask: p.umask, fs: p.fsBase, name: [...p.threadName], phase: p.api.phase });
  p.files.close(1);
  p.paths.chdir('/tmp');
  p.umask = 0o777;
  p.fsBase = 0x1234;
  p.threadName.fill(65);
  p.api.phase = 'request';
  p.exit = { status: 1 };
  pieces.forEach((piece, i) => piece.restore(saved[i]));
  const after = JSON.stringify({ fds: p.files.openFds(), cwd: p.paths.cwd, umask: p.umask, fs: p.fsBase, name: [...p.threadName], phase: p.api.phase });
  t.equal(after, before, 'files, cwd, umask, FS base, thread name and API phase are back');
  t.equal(p.exit, null, 'and the process has not exited');
  pieces.forEach((piece, i) => piece.discard?.(saved[i]));
});
