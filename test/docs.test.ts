/**
 * The project's documents are in the repository, and what points to them points somewhere real.
 * Pure: reads files only, no KVM.
 *
 * - A document named in source, tests, benchmarks, guest code or the documents themselves exists:
 *   every `docs/NAME.md`, and every upper-case `NAME.md` (README.md, SECURITY.md, …; lower-case
 *   names are data files, such as the examples' inputs) with or without a directory before it,
 *   resolved from the repository's top, from the naming file's directory, or in docs/.
 * - A section named after a document (`docs/ARCHITECTURE.md, "Reset"`) is one of its headings.
 * - A relative link in a Markdown file leads to a file that exists, and its #anchor to a heading.
 * - The three design documents are named with their folder (`docs/GUEST_ABI.md`, never a bare
 *   name): they once lived outside the repository, and a bare name read as if they still did.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot } from './helpers/differential.js';

const root = repoRoot;
const SCANNED = ['src', 'test', 'bench', 'guest', 'svm-lane', 'docs', 'README.md', 'SECURITY.md', 'package.json'];
/** Build outputs and fetched things, not sources. */
const SKIPPED_DIRS = new Set(['node_modules', 'bin', 'build', 'dist', 'out', '.tap']);
const TEXT = /\.(ts|mts|mjs|js|c|h|S|md|json|sh|txt|vcl)$|(^|\/)Makefile$/;
const self = relative(root, fileURLToPath(import.meta.url));

function textFiles(path: string): string[] {
  const full = join(root, path);
  if (!existsSync(full)) return [];
  if (statSync(full).isFile()) return TEXT.test(path) ? [path] : [];
  return readdirSync(full, { withFileTypes: true }).flatMap((e) => {
    if (e.isDirectory()) return SKIPPED_DIRS.has(e.name) ? [] : textFiles(join(path, e.name));
    return e.isFile() && TEXT.test(e.name) ? [join(path, e.name)] : [];
  });
}

const files = SCANNED.flatMap(textFiles).filter((f) => f !== self);
const lineOf = (text: string, index: number): number => text.slice(0, index).split('\n').length;

/** A mention as written, resolved to a repository path that exists, or null. */
function resolveDocument(file: string, mention: string): string | null {
  const candidates = [join(dirname(file), mention), mention];
  if (!mention.includes('/')) candidates.push(join('docs', mention));
  for (const c of candidates) {
    const path = relative(root, join(root, c));
    if (!path.startsWith('..') && existsSync(join(root, path))) return path;
  }
  return null;
}

const headingsOf = new Map<string, Set<string>>();
function headings(path: string): Set<string> {
  let set = headingsOf.get(path);
  if (!set) {
    set = new Set(readFileSync(join(root, path), 'utf8').split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => l.replace(/^#+ /, '').trim()));
    headingsOf.set(path, set);
  }
  return set;
}

// A path ending in an upper-case document name, or any document under docs/.
const DOCUMENT = /(?<![\w.\/-])((?:\.{1,2}\/|[\w-]+\/)*(?:[A-Z][A-Z0-9_]*|(?<=docs\/)[\w-]+)\.md)\b(?:,? "([^"\n]+)")?/g;
const PRIVATE = /(?<![\w.-])(?:[\w.-]*\/)*?(DESIGN|PLATFORM|GUEST_ABI)\.md\b/g;
const LINK = /\]\(([^)\s#]*)(?:#([^)\s]*))?\)/g;

/** A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens. */
const slug = (heading: string): string => heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');

t.test('the scan sees the repository', async (t) => {
  t.ok(files.includes('README.md') && files.some((f) => f.startsWith('src/')) && files.some((f) => f.startsWith('docs/')), `${files.length} files`);
});

t.test('every document a file names exists, and so does the section it names', async (t) => {
  const missing: string[] = [];
  let seen = 0;
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(DOCUMENT)) {
      seen++;
      const where = `${file}:${lineOf(text, m.index!)}`;
      const path = resolveDocument(file, m[1]!);
      if (!path) {
        missing.push(`${where}: ${m[1]} does not exist`);
        continue;
      }
      const section = m[2];
      if (section && path.endsWith('.md') && !headings(path).has(section)) missing.push(`${where}: ${path} has no heading "${section}"`);
    }
  }
  t.ok(seen > 20, `${seen} mentions of documents`);
  t.same(missing, [], 'every mention resolves');
});

t.test('relative links in Markdown files lead somewhere', async (t) => {
  const broken: string[] = [];
  for (const file of files.filter((f) => f.endsWith('.md'))) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(LINK)) {
      const [, target = '', anchor] = m;
      if (/^[a-z]+:/i.test(target) || (target === '' && anchor === undefined)) continue;
      const where = `${file}:${lineOf(text, m.index!)}: ${m[0].slice(2, -1)}`;
      const path = target === '' ? file : relative(root, join(root, dirname(file), target));
      if (!existsSync(join(root, path))) broken.push(`${where}: no such file`);
      else if (anchor && path.endsWith('.md') && ![...headings(path)].some((h) => slug(h) === anchor)) broken.push(`${where}: no such heading`);
    }
  }
  t.same(broken, [], 'every relative link resolves');
});

t.test('the design documents are named with their folder', async (t) => {
  const bare: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(PRIVATE)) {
      if (!/(^|\/)docs\/$/.test(m[0].slice(0, -m[1]!.length - 3))) bare.push(`${file}:${lineOf(text, m.index!)}: ${m[0]}`);
    }
  }
  t.same(bare, [], 'no bare DESIGN/PLATFORM/GUEST_ABI document names');
});
