// What a guest can change in its process (src/syscalls/process-state.ts): every field of a Process is
// in a piece of it or fixed for the process's life, so a new field cannot be left out of the freeze
// or the reset; restoring what was saved undoes a change to every piece; and a process thawed from
// a frozen one is, as the guest could observe it, the same process.
import t from 'tap';
import { tmpdir } from 'node:os';
import { GuestMemory, HostWindows } from '../src/paging/guest-memory.js';
import { USER_START } from '../src/paging/layout.js';
import { AddressSpace, PROT_READ, PROT_WRITE } from '../src/syscalls/address-space.js';
import { FileTable } from '../src/syscalls/fd-table.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { PathPolicy } from '../src/syscalls/path-policy.js';
import { Process } from '../src/syscalls/process.js';
import { discardSaved, freezeProcess, PROCESS_FIXED, PROCESS_STATE, restoreProcess, saveProcess, thawProcess } from '../src/syscalls/process-state.js';
import { SignalState } from '../src/syscalls/signal-state.js';

const SIGUSR1 = 10;

function newProcess(files = new FileTable([new EmptyFile(), new SinkFile(() => {}, 'stdout'), new SinkFile(() => {}, 'stderr')])): Process {
  return new Process({
    mem: new GuestMemory(HostWindows.over(new ArrayBuffer(16 << 20))),
    files,
    paths: new PathPolicy({ allowed: [{ real: tmpdir() }], cwd: '/', exe: { hostPath: process.execPath, guestPath: '/app/program' } }),
    mm: new AddressSpace({ userStart: USER_START, end: 16 << 20, imageStart: USER_START, brkStart: 8 << 20, stackTop: 16 << 20, stackSize: 1 << 20, stackGuard: 4096, release: () => {} }),
    signals: new SignalState(), argv: [], env: [], trace: null, warn: () => {},
  });
}

/** Everything a guest could find out about its process, one piece at a time. */
function observe(p: Process): Record<string, unknown> {
  return {
    fds: p.files.openFds().map((fd) => [fd, p.files.isCloexec(fd), p.files.get(fd)!.kind]),
    mappings: p.mm.list().map((m) => [m.start, m.end, m.prot, m.label]),
    brk: p.mm.brk,
    signals: [[...p.signals.action(SIGUSR1)], p.threadSignals.blocked.toString(), p.threadSignals.altStack, p.signals.pending.set.toString(),
      p.threadSignals.pending.set.toString(), [...p.signals.timers].map(([id, tm]) => [id, { ...tm, value: tm.value.toString() }])],
    cwd: p.paths.cwd,
    scalars: [p.umask, p.fsBase, p.gsBase, p.exit, p.pause],
    threads: JSON.parse(JSON.stringify(p.threads.freeze(), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))),
    api: [p.api.phase, [...p.api.handlers], p.api.ephemeral],
    regexes: p.regexes.freeze(),
  };
}

/** A request's worth of changes to every piece. */
function change(p: Process): void {
  p.files.close(1);
  p.files.install(new EmptyFile(), 5, true);
  p.mm.map(0, 1 << 16, PROT_READ | PROT_WRITE, 'any', 'anon');
  p.mm.setBrk(p.mm.brk + (1 << 16));
  p.signals.setAction(SIGUSR1, new Uint8Array(32).fill(7));
  p.threadSignals.blocked = 1n << 9n;
  p.threadSignals.altStack = { sp: 0x300000, size: 8192, flags: 0 };
  p.signals.pending.add(SIGUSR1, new Uint8Array(128));
  p.threadSignals.pending.add(SIGUSR1 + 2, new Uint8Array(128));
  p.signals.timers.set(0, { due: 5, interval: 1, signo: SIGUSR1, value: 3n, clock: 1, overrun: 0 });
  p.paths.chdir('/tmp');
  p.umask = 0o777;
  p.threads.current.name.fill(65);
  p.threads.current.clearChildTid = 0x4000;
  p.threads.spawn({ regs: new Uint32Array(36), xsave: new Uint8Array(16), fsBase: 1, gsBase: 2 });
  p.fsBase = 0x1234;
  p.gsBase = 0x5678;
  p.exit = { status: 1 };
  p.api.phase = 'init';
  p.regexes.free(0);
  p.regexes.compile('b+');
}

t.test('every field of a Process is in one piece of the state, or fixed', async (t) => {
  const p = newProcess();
  const covered: string[] = Object.values(PROCESS_STATE).flat();
  t.same(covered.filter((f, i) => covered.indexOf(f) !== i), [], 'no field in two pieces');
  const fixed = PROCESS_FIXED as readonly string[];
  t.same(covered.filter((f) => fixed.includes(f)), [], 'no fixed field in a piece');
  const unplaced = Object.keys(p).filter((field) => !covered.includes(field) && !fixed.includes(field));
  t.same(unplaced, [], 'no field of Process is left out (add it to a piece, or to PROCESS_FIXED if no request can change it)');
  t.same([...covered, ...fixed].filter((f) => !(f in p)), [], 'and each named field exists');
});

t.test('restoring the saved process undoes a change to every piece', async (t) => {
  const p = newProcess();
  p.api.phase = 'request';
  p.regexes.compile('a*');
  const saved = saveProcess(p);
  const before = observe(p);
  change(p);
  const changed = observe(p);
  for (const piece of Object.keys(before)) t.not(JSON.stringify(changed[piece]), JSON.stringify(before[piece]), `the change reached ${piece}`);
  restoreProcess(p, saved);
  t.same(observe(p), before, 'every piece is back');
  change(p);
  restoreProcess(p, saved);
  t.same(observe(p), before, 'and again, from the same saved copy');
  discardSaved(p, saved);
});

t.test('a process thawed from a frozen one is the same process', async (t) => {
  const p = newProcess();
  change(p);
  p.exit = null;
  p.api.register(1, 0x401000);
  p.api.ephemeral = false;
  p.api.phase = 'request';
  const frozen = structuredClone(freezeProcess(p));
  const thawed = newProcess(new FileTable([], frozen.files.maxFiles));
  thawProcess(thawed, frozen, () => () => {});
  t.same(observe(thawed), observe(p), 'files, mappings, break, signals, cwd, scalars, the guest API and its regexes');
  t.throws(() => thawed.files.thaw(frozen.files, () => () => {}), { code: 'TSKVM_ERR_INTERNAL' }, 'a table is thawed only when empty');
});
