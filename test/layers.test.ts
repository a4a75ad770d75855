// The source is layered, and no folder imports from a layer above its own (types included), so the
// tree reads bottom-up: host bindings, then KVM, ELF and guest memory, then the guest's Linux
// process and its guest API, then the VM core, then the request runtime, then the server and the bench
// harness, then the command line and the package's entry point.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { repoRoot } from './helpers/differential.js';

const LAYERS: string[][] = [
  ['errors.ts', 'host'],
  ['hypervisor/kvm', 'elf', 'paging'],
  ['syscalls', 'syscalls/api', 'syscalls/fs', 'syscalls/open-files'],
  ['hypervisor'],
  ['runtime'],
  ['server', 'bench'],
  ['cli', 'index.ts'],
];

const src = join(repoRoot, 'src');

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

/** The layer of a file: that of its folder, or of the file itself for the top-level ones. */
function layerOf(file: string): number {
  const path = relative(src, file);
  const folder = dirname(path);
  const layer = LAYERS.findIndex((names) => names.includes(folder === '.' ? path : folder));
  if (layer < 0) throw new Error(`${path} is in no layer: add its folder to LAYERS`);
  return layer;
}

t.test('no file imports from a layer above its own', async (t) => {
  const all = files(src);
  t.ok(all.length > 50, `${all.length} source files`);
  const upward: string[] = [];
  for (const file of all) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*)'(\.[^']+)'/g)) {
      const target = resolve(dirname(file), m[1]!).replace(/\.js$/, '.ts');
      if (layerOf(target) > layerOf(file)) upward.push(`${relative(src, file)} imports ${relative(src, target)}`);
    }
  }
  t.same(upward, [], 'imports only go down or sideways');
});

t.test('every folder of src/ opens with a README saying what it holds and what it may use', async (t) => {
  const folders = (dir: string): string[] => readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory()).flatMap((e) => [join(dir, e.name), ...folders(join(dir, e.name))]);
  for (const folder of folders(src)) {
    let text = '';
    try {
      text = readFileSync(join(folder, 'README.md'), 'utf8');
    } catch {
      // reported below
    }
    t.match(text, /May use:/, `${relative(src, folder)}/README.md says what it may use`);
  }
});
