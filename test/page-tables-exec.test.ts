// The page-table edits behind executable file mappings (src/paging/page-tables.ts), on page tables built
// into a plain buffer: setUserExecutable makes exactly the pages asked executable and the rest of a
// split 2 MiB page no-execute, undoes it, runs out of tables cleanly, and onlyExecutableEdits — what a
// request VM's inspect() and the syscall fuzzer use to tell such edits from writes to the hypervisor's
// pages — accepts what it makes and nothing else.
import t from 'tap';
import { buildPageTables, onlyExecutableEdits, pageTableRanges, setUserExecutable } from '../src/paging/page-tables.js';
import { HUGE_PAGE, IMAGE_PT_ADDR, LOW_PT_ADDR, PAGE, PD_ADDR, USER_START } from '../src/paging/layout.js';

const SIZE = 64 << 20;
const NX = 1n << 63n;

function tables(): Uint8Array {
  const memory = new Uint8Array(USER_START);
  // Sized as the address space the tables describe; only the first 2 MiB (the tables) are ever written.
  const big = new Uint8Array(SIZE);
  buildPageTables(big, SIZE, [], { nx: true, executable: [[0x400000, 0x401000]] });
  memory.set(big.subarray(0, USER_START));
  return memory;
}

/** The leaf entry mapping `addr`: [where it is, its value]. */
function leaf(memory: Uint8Array, addr: number): [number, bigint] {
  const view = new DataView(memory.buffer);
  const pdAt = PD_ADDR + (addr / HUGE_PAGE) * 8;
  const pde = view.getBigUint64(pdAt, true);
  if (pde & 0x80n) return [pdAt, pde];
  const at = Number(pde & 0x000f_ffff_ffff_f000n) + ((addr % HUGE_PAGE) / PAGE) * 8;
  return [at, view.getBigUint64(at, true)];
}
const executable = (memory: Uint8Array, addr: number): boolean => (leaf(memory, addr)[1] & NX) === 0n;

function edits(fork: Uint8Array, master: Uint8Array): number[] {
  const bad: number[] = [];
  for (const [start, end] of pageTableRanges(SIZE)) {
    for (let page = start; page < end; page += PAGE) if (!onlyExecutableEdits(fork, master, page, SIZE)) bad.push(page);
  }
  return bad;
}

t.test('a library mapped executable, then taken away', (t) => {
  const master = tables();
  const fork = master.slice();
  const written = new Set<number>();
  const record = (at: number, len: number): void => { for (let p = Math.floor(at / PAGE); p <= Math.floor((at + len - 1) / PAGE); p++) written.add(p * PAGE); };
  const lib = 0x1a0_3000;
  t.notOk(executable(fork, lib), 'mapped data is no-execute');
  t.equal(setUserExecutable(fork, SIZE, lib - PAGE, lib + 3 * PAGE, { executable: [[lib, lib + 2 * PAGE]], untouched: [] }, record), true, 'changed');
  t.ok(executable(fork, lib) && executable(fork, lib + PAGE), 'its code pages are executable');
  t.notOk(executable(fork, lib - PAGE) || executable(fork, lib + 2 * PAGE), 'its neighbours are not');
  t.notOk(executable(fork, lib + HUGE_PAGE), 'nor the next 2 MiB');
  t.ok(executable(fork, 0x400000) && !executable(fork, 0x401000), "the program's own code and data as they were");
  t.ok([...written].every((p) => p < USER_START), 'only page-table pages written, all recorded');
  t.ok(written.has(LOW_PT_ADDR) && [...written].some((p) => p >= IMAGE_PT_ADDR), 'a table of its own, mapped supervisor-only');
  t.same(edits(fork, master), [], 'onlyExecutableEdits accepts them');
  t.equal(setUserExecutable(fork, SIZE, lib - PAGE, lib + 3 * PAGE, { executable: [[lib, lib + 2 * PAGE]], untouched: [] }, record), false, 'again: no change');
  t.equal(setUserExecutable(fork, SIZE, lib, lib + 2 * PAGE, { executable: [], untouched: [] }, record), true, 'taken away');
  t.notOk(executable(fork, lib) || executable(fork, lib + PAGE), 'no-execute again');
  t.equal(setUserExecutable(fork, SIZE, 0x400000, 0x402000, { executable: [], untouched: [[0x400000, 0x402000]] }, record), false, 'the images are left alone');
  t.end();
});

t.test('what is not such an edit is caught', (t) => {
  const master = tables();
  const lib = 0x1a0_3000;
  const fork = master.slice();
  setUserExecutable(fork, SIZE, lib, lib + PAGE, { executable: [[lib, lib + PAGE]], untouched: [] }, () => {});
  const view = new DataView(fork.buffer);
  const tamper = (at: number, value: bigint): number[] => {
    const old = view.getBigUint64(at, true);
    view.setBigUint64(at, value, true);
    const found = edits(fork, master);
    view.setBigUint64(at, old, true);
    return found;
  };
  const [leafAt, leafValue] = leaf(fork, lib);
  t.same(tamper(leafAt, leafValue | 0x60n), [], 'accessed and dirty bits: fine');
  t.not(tamper(leafAt, (leafValue & ~0x000f_ffff_ffff_f000n) | 0x1000n).length, 0, 'a user page mapped onto the GDT');
  t.not(tamper(leafAt, leafValue & ~4n), [], 'a user page made supervisor');
  t.not(tamper(LOW_PT_ADDR + (0x1000 / PAGE) * 8, BigInt(0x1000) | 7n).length, 0, 'the GDT made user-accessible');
  t.not(tamper(PD_ADDR + (0x200_0000 / HUGE_PAGE) * 8, BigInt(IMAGE_PT_ADDR + 300 * PAGE) | 7n).length, 0, 'a 2 MiB page pointed at a table that maps something else');
  t.end();
});

t.test('out of tables: null, and nothing half done', (t) => {
  const memory = tables();
  let last: boolean | null = true;
  let made = 0;
  for (let huge = 0x80_0000; huge < SIZE && last !== null; huge += HUGE_PAGE) {
    last = setUserExecutable(memory, SIZE, huge, huge + PAGE, { executable: [[huge, huge + PAGE]], untouched: [] }, () => {});
    if (last) made++;
  }
  // 64 MiB has 28 such 2 MiB pages: room for all of them.
  t.equal(last, true, 'a small guest never runs out');
  t.equal(made, (SIZE - 0x80_0000) / HUGE_PAGE);
  t.ok((USER_START - IMAGE_PT_ADDR) / PAGE > 400, 'room for hundreds of 2 MiB pages of code');
  t.end();
});
