// BusyBox (Debian's busybox-static): every applet case must behave under tskvm exactly as natively.
import t from 'tap';
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { GUEST_UNAME } from '../src/syscalls/proc.js';
import { assertSameOutcome, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';
import { BUSYBOX, busyboxCases } from './helpers/busybox.js';

t.test('busybox applets: identical output and exit status', async (t) => {
  if (!kvmAvailable(t)) return;
  t.ok(existsSync(BUSYBOX), `${BUSYBOX} is installed (apt-get install busybox-static)`);
  if (!existsSync(BUSYBOX)) return;
  t.ok(new Set(busyboxCases.map((c) => c.args[0])).size >= 25, 'at least 25 different applets');
  for (const c of busyboxCases) {
    const opts = { env: c.env ?? {}, input: c.input };
    assertSameOutcome(t, runTskvm(BUSYBOX, c.args, { ...opts, allow: c.allow }), runNative(BUSYBOX, c.args, opts), c.name);
  }
});

t.test('uname tells the guest fixed values, never the host kernel\'s', async (t) => {
  if (!kvmAvailable(t) || !existsSync(BUSYBOX)) return;
  const inside = runTskvm(BUSYBOX, ['uname', '-a']);
  t.equal(inside.status, 0);
  t.equal(inside.stdout.toString(), `${GUEST_UNAME.slice(0, 5).join(' ')} GNU/Linux\n`, 'sysname, nodename, release, version, machine as documented');
  t.notMatch(inside.stdout.toString(), release(), 'not the host\'s release');
  t.equal(runNative(BUSYBOX, ['uname', '-r']).stdout.toString().trim(), release(), 'natively it is the host\'s');
});
