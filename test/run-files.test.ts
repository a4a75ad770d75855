// Files: nothing is visible unless allowed; symlinks and `..` are resolved on the host
// before the check, so neither can lead out of an allowed directory.
import t from 'tap';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertSameOutcome, guestPath, kvmAvailable, runNative, runTskvm } from './helpers/differential.js';
import { FIXTURE_TREE } from './helpers/busybox.js';

const FLAVOURS = ['glibc', 'pie', 'musl'];

t.test('allowed files and directories read as they do natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const paths = [FIXTURE_TREE, join(FIXTURE_TREE, 'a.txt'), join(FIXTURE_TREE, 'sub'), join(FIXTURE_TREE, 'sub/link-to-a')];
  for (const f of FLAVOURS) {
    const bin = guestPath(`files.${f}`);
    const native = runNative(bin, paths);
    t.equal(native.status, 0, `${f}: native run reads everything`);
    assertSameOutcome(t, runTskvm(bin, paths, { allow: [FIXTURE_TREE] }), native, f);
  }
});

t.test('files outside the allowed paths are refused, escapes included', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-files-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const allowed = join(dir, 'allowed');
  mkdirSync(allowed);
  writeFileSync(join(allowed, 'ok.txt'), 'inside\n');
  writeFileSync(join(dir, 'secret.txt'), 'outside\n');
  symlinkSync('/etc/passwd', join(allowed, 'to-passwd'));
  symlinkSync('../secret.txt', join(allowed, 'to-secret'));
  symlinkSync(dir, join(allowed, 'to-parent'));
  const refused = [
    '/etc/passwd',
    join(dir, 'secret.txt'),
    join(allowed, '..', 'secret.txt'),
    join(allowed, 'to-passwd'),
    join(allowed, 'to-secret'),
    join(allowed, 'to-parent', 'secret.txt'),
  ];
  for (const f of FLAVOURS) {
    const vm = runTskvm(guestPath(`files.${f}`), [join(allowed, 'ok.txt'), ...refused], { allow: [allowed] });
    const out = vm.stdout.toString();
    t.equal(vm.status, 1, `${f}: refusals make the program fail`);
    t.match(out, /ok\.txt: size=7 fstat-size=7/, `${f}: the allowed file is read`);
    t.notMatch(out, /outside|root:x:0/, `${f}: no byte of a refused file leaks`);
    for (const path of refused) {
      t.match(out, new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: error: (Permission denied|No such file or directory)`), `${f}: ${path} refused`);
    }
  }
});

t.test('--allow-write lets a program create, change and remove files there only', async (t) => {
  if (!kvmAvailable(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-write-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const writable = join(dir, 'w');
  mkdirSync(writable);
  const nativeDir = join(dir, 'native');
  mkdirSync(nativeDir);
  for (const f of FLAVOURS) {
    const bin = guestPath(`writefile.${f}`);
    const native = runNative(bin, [nativeDir]);
    t.equal(native.status, 0, `${f}: native run succeeds`);
    const vm = runTskvm(bin, [writable], { allowWrite: [writable] });
    t.equal(vm.stdout.toString().replaceAll(writable, 'DIR'), native.stdout.toString().replaceAll(nativeDir, 'DIR'), `${f}: same results`);
    t.equal(vm.status, 0, `${f}: exit status`);
    t.same(readdirSync(writable), [], `${f}: the program cleaned up after itself`);

    const outside = join(dir, 'escaped.txt');
    const refused = runTskvm(bin, [writable, outside], { allowWrite: [writable] });
    t.match(refused.stdout.toString(), /error: (Permission denied|No such file or directory)/, `${f}: writing outside is refused`);
    t.same(readdirSync(dir).sort(), ['native', 'w'], `${f}: nothing was created outside`);
  }
  const readOnly = runTskvm(guestPath('writefile.glibc'), [writable], { allow: [writable] });
  t.not(readOnly.status, 0, 'a read-only allowance does not permit writes');
});
