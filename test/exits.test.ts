// The exit handler as a function: exits built by hand, a vCPU that is only registers, a Process over
// plain memory. No /dev/kvm: this runs on every machine, and shows what each exit leads to.
import t from 'tap';
import { GuestMemory, HostWindows } from '../src/paging/guest-memory.js';
import { PORT_EXCEPTION_BASE, PORT_HYPERCALL, PORT_SYSCALL, USER_START } from '../src/paging/layout.js';
import { E } from '../src/host/errno.js';
import { regIndex, sregs as sregsLayout, type RegName } from '../src/hypervisor/kvm/abi.js';
import type { VcpuExit } from '../src/hypervisor/kvm/exit.js';
import { handleExit, type ExitContext, type ExitCpu } from '../src/hypervisor/run-loop.js';
import { describeFailure } from '../src/runtime/request-failure.js';
import { endDeadline, startDeadline, timeLeft } from '../src/syscalls/deadline.js';
import { FileTable } from '../src/syscalls/fd-table.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { PathPolicy } from '../src/syscalls/path-policy.js';
import { Process } from '../src/syscalls/process.js';
import { SignalState } from '../src/syscalls/signal-state.js';

/** A vCPU that is registers and counters. */
function fakeCpu(): ExitCpu & { completed: number; msrs: Array<[number, bigint | number]> } {
  const regs = new Uint32Array(Object.keys(regIndex).length * 2);
  const cpu = {
    regs, completed: 0, msrs: [] as Array<[number, bigint | number]>,
    get: (reg: RegName): number => regs[regIndex[reg] * 2]! + regs[regIndex[reg] * 2 + 1]! * 2 ** 32,
    set: (reg: RegName, value: number): void => {
      const v = BigInt.asUintN(64, BigInt(value));
      regs[regIndex[reg] * 2] = Number(v & 0xffff_ffffn);
      regs[regIndex[reg] * 2 + 1] = Number(v >> 32n);
    },
    registerDump: (): Record<RegName, bigint> => Object.fromEntries(Object.keys(regIndex).map((r) => [r, BigInt(cpu.get(r as RegName))])) as Record<RegName, bigint>,
    getSregs: (): Buffer => Buffer.alloc(sregsLayout.size),
    setSregs: (): void => {},
    getXsave: (): Buffer => Buffer.alloc(4096),
    setXsave: (): void => {},
    markRegsDirty: (): void => {},
    setMsrs: (entries: Array<[number, bigint | number]>): void => { cpu.msrs.push(...entries); },
    completeExit: (): void => { cpu.completed++; },
  };
  return cpu;
}

function guest(): { p: Process; warnings: string[] } {
  const warnings: string[] = [];
  const p = new Process({
    mem: new GuestMemory(HostWindows.over(new ArrayBuffer(16 << 20))),
    files: new FileTable([new EmptyFile(), new SinkFile(() => {}), new SinkFile(() => {})]),
    paths: new PathPolicy({ allowed: [], exe: { hostPath: process.execPath, guestPath: '/app/program' } }),
    mm: {} as never, signals: new SignalState(), argv: [], env: [], trace: null, warn: (m) => warnings.push(m),
  });
  return { p, warnings };
}

function context(timerFired = false): ExitContext {
  return { timeoutMs: 1000, args: new Float64Array(6), unknownReported: new Set(), timerFired: () => timerFired, patchSyscallSite: null, slicing: false, rearm: () => {} };
}

const out = (port: number, size = 4): VcpuExit => ({ kind: 'io', port, out: true, size, count: 1 });

t.test('a syscall exit runs the call and goes back in with its result in rax', async (t) => {
  const { p, warnings } = guest();
  const cpu = fakeCpu();
  cpu.set('rax', 39); // getpid
  t.equal(handleExit(out(PORT_SYSCALL), cpu, p, context()), null, 'back into the guest');
  t.equal(cpu.get('rax'), Process.PID, 'rax = the pid');
  cpu.set('rax', 999_999);
  t.equal(handleExit(out(PORT_SYSCALL), cpu, p, context()), null);
  t.equal(cpu.get('rax'), 2 ** 64 - E.ENOSYS, 'an unknown call: -ENOSYS');
  t.match(warnings, [/unsupported syscall 999999/], 'reported');
  cpu.set('rax', 60); // exit
  cpu.set('rdi', 3);
  t.same(handleExit(out(PORT_SYSCALL), cpu, p, context()), { status: 3, outcome: 'exit' }, 'exit(3) ends the run');
});

t.test('a hypercall exit reads the C calling convention', async (t) => {
  const { p, warnings } = guest();
  const cpu = fakeCpu();
  p.mem.put(USER_START, Buffer.from('hello'));
  cpu.set('rax', 0x7f000); // sys_log(buffer, length)
  cpu.set('rdi', USER_START);
  cpu.set('rsi', 5);
  t.equal(handleExit(out(PORT_HYPERCALL), cpu, p, context()), null);
  t.same(warnings, ['log: hello'], 'the line from rdi and rsi');
});

t.test('port I/O that is not the stubs\' exact instruction is a fault, and the `in` is completed first', async (t) => {
  for (const exit of [{ kind: 'io', port: PORT_SYSCALL, out: false, size: 4, count: 1 }, out(PORT_SYSCALL, 1), { ...out(PORT_HYPERCALL), count: 2 }, out(0x70, 1)] as VcpuExit[]) {
    const { p } = guest();
    const cpu = fakeCpu();
    const end = handleExit(exit, cpu, p, context());
    t.match(end, { outcome: 'fault', signal: 11, status: 139, fault: { summary: /port I\/O/ } }, `${JSON.stringify(exit)}: SIGSEGV`);
    t.equal(cpu.completed, 1, 'the instruction is finished before the run ends');
  }
});

t.test('an exception stub\'s exit is the exception; the others end the run as a fault or a timeout', async (t) => {
  const { p } = guest();
  const cpu = fakeCpu();
  cpu.set('rip', USER_START);
  t.match(handleExit(out(PORT_EXCEPTION_BASE + 6, 1), cpu, p, context()), { outcome: 'fault', signal: 4, fault: { summary: /invalid opcode/ } }, '#UD: SIGILL');
  t.match(handleExit({ kind: 'hlt' }, cpu, p, context()), { outcome: 'fault', fault: { summary: /hlt/ } });
  t.match(handleExit({ kind: 'shutdown' }, cpu, p, context()), { outcome: 'fault', fault: { summary: /triple fault/ } });
  t.match(handleExit({ kind: 'mmio', address: 0x1_0000_0000, write: true, size: 8 }, cpu, p, context()), { outcome: 'fault', fault: { summary: /0x100000000/ } });
  t.equal(handleExit({ kind: 'interrupted' }, cpu, p, context(false)), null, 'another signal: back in');
  startDeadline(0.001); // the run's deadline has passed when its timer fires
  while (timeLeft() > 0) { /* a microsecond */ }
  t.match(handleExit({ kind: 'interrupted' }, cpu, p, context(true)), { outcome: 'timeout', status: 124, message: /longer than 1 s and was stopped at rip/ }, 'the timer: a timeout');
  endDeadline();
  t.throws(() => handleExit({ kind: 'internal-error', suberror: 1 }, cpu, p, context()), { code: 'TSKVM_ERR_KVM_EXIT', message: /KVM_EXIT_INTERNAL_ERROR \(suberror 1\)/ });
  t.throws(() => handleExit({ kind: 'fail-entry', hardwareReason: 0x80000021n }, cpu, p, context()), { code: 'TSKVM_ERR_KVM_EXIT', message: /hardware reason 0x80000021/ });
});

t.test('a syscall that waits until the deadline ends the run as a timeout, naming the call', async (t) => {
  const { p } = guest();
  const cpu = fakeCpu();
  p.mem.setU64(USER_START, 10); // struct timespec { 10 s, 0 }
  p.mem.setU64(USER_START + 8, 0);
  cpu.set('rax', 35); // nanosleep
  cpu.set('rdi', USER_START);
  startDeadline(50);
  try {
    const started = performance.now();
    const end = handleExit(out(PORT_SYSCALL), cpu, p, { ...context(), timeoutMs: 50 });
    t.match(end, { outcome: 'timeout', status: 124, message: /longer than 0.05 s and was stopped while it waited in nanosleep/ });
    t.ok(performance.now() - started < 1000, 'after the deadline, not the 10 s asked');
  } finally {
    endDeadline();
  }
});

t.test('storage calls in a VM that is not a storage VM: sys_is_storage is 0, storage_return ends the run (500), never -ENOSYS', async (t) => {
  const { p } = guest();
  const cpu = fakeCpu();
  cpu.set('rax', 0x10706); // sys_is_storage()
  t.equal(handleExit(out(PORT_HYPERCALL), cpu, p, context()), null);
  t.equal(cpu.get('rax'), 0, 'sys_is_storage: 0, not -ENOSYS (which C reads as true)');
  for (const [nr, name] of [[0x10011, 'storage_return'], [0x10013, 'storage_noreturn']] as const) {
    const { p } = guest();
    const cpu = fakeCpu();
    cpu.set('rax', nr);
    const end = handleExit(out(PORT_HYPERCALL), cpu, p, context());
    t.match(end, { outcome: 'pause', pause: { kind: 'failed', reason: new RegExp(`${name} outside a storage call`) } }, `${name}: the run ends`);
    t.match(describeFailure({ ...end!, exits: 1 }, false), { code: 'TSKVM_ERR_BAD_RESPONSE', status: 500 }, `${name}: 500 TSKVM_ERR_BAD_RESPONSE`);
  }
});
