// Mutated ELFs booted in real VMs: each must end as a typed error (TskvmError), a
// normal exit, a clean guest fault or a timeout — never a host exception or a hang.
// KVM_RUN failing, an ioctl failing and TSKVM_ERR_INTERNAL are typed too, but they
// are tskvm failing, not the ELF being refused: they count as failures.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine } from '../src/hypervisor/machine.js';
import { TskvmError } from '../src/errors.js';
import { EmptyFile, SinkFile } from '../src/syscalls/open-files/memory-file.js';
import { mutatedElfs } from './helpers/elf-mutations.js';
import { guestPath, kvmAvailable, repoRoot } from './helpers/differential.js';

const COUNT = Number(process.env.TSKVM_FUZZ_COUNT ?? 2000);
const HOST_FAILURES = new Set(['TSKVM_ERR_KVM_EXIT', 'TSKVM_ERR_KVM_IOCTL', 'TSKVM_ERR_INTERNAL']);

t.test(`${COUNT} mutated ELFs boot or fail cleanly`, async (t) => {
  if (!kvmAvailable(t)) return;
  const bases = [
    readFileSync(join(repoRoot, 'test/fixtures/elf/tiny-exit7.elf')),
    readFileSync(guestPath('hello.glibc')),
    readFileSync(guestPath('hello.musl')),
  ];
  const outcomes = new Map<string, number>();
  const count = (k: string): void => { outcomes.set(k, (outcomes.get(k) ?? 0) + 1); };
  let output = 0;
  const sink = (): SinkFile => new SinkFile((b) => { output += b.length; });
  let booted = 0;
  const started = Date.now();
  for (let b = 0; b < bases.length; b++) {
    for (const { name, bytes } of mutatedElfs(bases[b]!, Math.ceil(COUNT / bases.length), 1000 + b)) {
      let machine: Machine | undefined;
      try {
        machine = new Machine(bytes, `/fuzz/${name}`, {
          maxMemoryMiB: 64, timeoutSec: 0.25, stdio: [new EmptyFile(), sink(), sink()], warn: () => {},
        });
        booted++;
        count(machine.run().outcome);
      } catch (e) {
        if (e instanceof TskvmError && !HOST_FAILURES.has(e.code)) count(e.code);
        else {
          t.fail(`${name}: host failure ${(e as Error).stack}`);
          return;
        }
      } finally {
        machine?.close();
      }
    }
  }
  t.ok(booted > 0, `${booted} mutants booted in a VM`);
  t.ok([...outcomes.keys()].some((k) => k.startsWith('TSKVM_ERR_ELF_')), 'some were refused by the loader');
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}; ${output} bytes of guest output; ${Date.now() - started} ms`);
});
