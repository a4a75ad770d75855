// The error codes are one list (src/errors.ts), and it has no dead entries: every code is given
// somewhere in the source (the ELF parser's by their suffix, `fail('DYNAMIC', …)`).
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, TskvmError } from '../src/errors.js';
import { repoRoot } from './helpers/differential.js';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

t.test('every code in ERROR_CODES is used by the source, and TskvmError carries it', async (t) => {
  const text = sources(join(repoRoot, 'src')).filter((f) => !f.endsWith('errors.ts')).map((f) => readFileSync(f, 'utf8')).join('\n');
  for (const code of Object.keys(ERROR_CODES)) {
    const elf = /^TSKVM_ERR_ELF_(.+)$/.exec(code)?.[1];
    t.ok(text.includes(`'${code}'`) || (elf !== undefined && text.includes(`fail('${elf}'`)), `${code} is given somewhere`);
  }
  const e = new TskvmError('TSKVM_ERR_CONFIG', 'x', { key: 1 });
  t.same({ code: e.code, message: e.message, details: e.details, name: e.name }, { code: 'TSKVM_ERR_CONFIG', message: 'x', details: { key: 1 }, name: 'TskvmError' });
});
