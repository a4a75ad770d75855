// The start-up probe, as `tskvm platform` reports it, against what the host's kernel says it loaded:
// PVM keeps `syscall` in ring 3, hardware KVM (kvm_amd, kvm_intel) enters ring 0 at LSTAR; WRFSBASE
// works in ring 3 where the CPU has it.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cliPath, kvmAvailable } from './helpers/differential.js';

t.test('tskvm platform: the probe agrees with the KVM module the host loaded', async (t) => {
  if (!kvmAvailable(t)) return;
  const json = spawnSync(process.execPath, [cliPath, 'platform', '--json'], { encoding: 'utf8' });
  t.equal(json.status, 0, json.stderr);
  const p = JSON.parse(json.stdout) as { syscallEntry: string; taskRegister: number; fsgsbase: boolean; nx: boolean; pvm: boolean; description: string };
  const pvm = existsSync('/sys/module/kvm_pvm');
  t.equal(p.pvm, pvm, 'kvm_pvm loaded or not');
  if (pvm) {
    t.equal(p.syscallEntry, 'ring3-jmp', 'PVM: syscall stays in ring 3');
  } else if (existsSync('/sys/module/kvm_amd') || existsSync('/sys/module/kvm_intel')) {
    t.equal(p.syscallEntry, 'ring0-sysret', 'hardware KVM: syscall enters ring 0');
  }
  t.ok(p.taskRegister === 9 || p.taskRegister === 11, 'TR is a 64-bit TSS, available or busy');
  // WRFSBASE works in the guest's ring 3 exactly where this machine's CPU offers it to processes.
  const cpuFlags = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1]?.split(/\s+/) ?? [];
  t.equal(p.fsgsbase, cpuFlags.includes('fsgsbase'), `wrfsbase in ring 3: ${p.fsgsbase}, as /proc/cpuinfo says`);
  t.equal(p.nx, cpuFlags.includes('nx'), `no-execute pages: ${p.nx}, as /proc/cpuinfo says`);

  const text = spawnSync(process.execPath, [cliPath, 'platform'], { encoding: 'utf8' });
  t.equal(text.status, 0);
  t.equal(text.stdout.split('\n')[0], p.description, 'the description first');
  t.match(text.stdout, new RegExp(`^syscall entry: ${p.syscallEntry}$`, 'm'));
  t.match(text.stdout, new RegExp(`^wrfsbase in ring 3: ${p.fsgsbase ? 'yes' : 'no'}$`, 'm'));
  t.match(text.stdout, new RegExp(`^no-execute pages: ${p.nx ? 'yes' : 'no'}$`, 'm'));
});

t.test('tskvm platform: unknown options are usage errors', async (t) => {
  const r = spawnSync(process.execPath, [cliPath, 'platform', '--bogus'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /platform: unknown option --bogus/);
});
