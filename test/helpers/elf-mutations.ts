/**
 * Deterministic ELF mutants for fuzzing the loader (and, reused by the KVM tests, for
 * booting hostile images in real VMs). The same (base, count, seed) always yields the
 * same mutants, so a failure is reproduced from its name alone.
 *
 * Mutations, chosen at random per mutant:
 *   header-flips   a few bytes changed in the first 4 KiB (ELF header, program headers)
 *   flips          a few bytes changed anywhere
 *   truncate       the file cut short (half the time within the first 4 KiB)
 *   phdr-field     one program header field set to an edge value
 *   ehdr-field     one ELF header field set to an edge value
 *   combo          two or three of the above
 */

/** xorshift32: tiny, fast, and good enough to pick mutations. */
export class Xorshift32 {
  private state: number;

  constructor(seed: number) {
    // Scramble the seed so nearby seeds give unrelated sequences; the state must not be 0.
    this.state = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0) || 0x6d2b79f5;
    for (let i = 0; i < 8; i++) this.next();
  }

  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }

  /** Uniform-enough integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.next() / 2 ** 32) * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  u64(): bigint {
    return (BigInt(this.next()) << 32n) | BigInt(this.next());
  }
}

interface Field {
  name: string;
  offset: number;
  width: 1 | 2 | 4 | 8;
}

const EHDR_FIELDS: Field[] = [
  { name: 'EI_CLASS', offset: 4, width: 1 },
  { name: 'EI_DATA', offset: 5, width: 1 },
  { name: 'e_type', offset: 16, width: 2 },
  { name: 'e_machine', offset: 18, width: 2 },
  { name: 'e_entry', offset: 24, width: 8 },
  { name: 'e_phoff', offset: 32, width: 8 },
  { name: 'e_shoff', offset: 40, width: 8 },
  { name: 'e_phentsize', offset: 54, width: 2 },
  { name: 'e_phnum', offset: 56, width: 2 },
  { name: 'e_shnum', offset: 60, width: 2 },
  { name: 'e_shstrndx', offset: 62, width: 2 },
];

const PHDR_FIELDS: Field[] = [
  { name: 'p_type', offset: 0, width: 4 },
  { name: 'p_flags', offset: 4, width: 4 },
  { name: 'p_offset', offset: 8, width: 8 },
  { name: 'p_vaddr', offset: 16, width: 8 },
  { name: 'p_filesz', offset: 32, width: 8 },
  { name: 'p_memsz', offset: 40, width: 8 },
  { name: 'p_align', offset: 48, width: 8 },
];

/** Values at the edges of what the loader checks: page and address-space limits, overflow. */
const EDGE_VALUES_64 = [
  0n, 1n, 0xfffn, 0x1000n, 0x200000n, 0x400000n, 0x7fffffffn, 0xffffffffn, 1n << 32n,
  (1n << 47n) - 0x1000n, (1n << 47n) - 1n, 1n << 47n, 1n << 48n, (1n << 53n) + 1n, 1n << 63n,
  (1n << 64n) - 0x1000n, (1n << 64n) - 1n,
];
const EDGE_VALUES_SMALL = [0n, 1n, 2n, 3n, 4n, 6n, 7n, 55n, 56n, 57n, 62n, 255n, 256n, 257n, 0x6474e551n, 0xffffn, 0xffffffffn];

export function* mutatedElfs(base: Uint8Array, count: number, seed: number): Generator<{ name: string; bytes: Uint8Array }> {
  const rng = new Xorshift32(seed);
  const kinds = ['header-flips', 'flips', 'truncate', 'phdr-field', 'ehdr-field', 'combo'] as const;
  for (let i = 0; i < count; i++) {
    const kind = rng.pick(kinds);
    const steps = kind === 'combo'
      ? Array.from({ length: 2 + rng.below(2) }, () => rng.pick(kinds.slice(0, 5)))
      : [kind];
    let bytes: Uint8Array = new Uint8Array(base); // a copy (Buffer#slice would share memory)
    const notes: string[] = [];
    for (const step of steps) {
      const result = mutate(step, bytes, rng);
      bytes = result.bytes;
      notes.push(result.note);
    }
    yield { name: `mutant-${seed}-${i}-${kind}:${notes.join(',')}`, bytes };
  }
}

function mutate(kind: string, bytes: Uint8Array, rng: Xorshift32): { bytes: Uint8Array; note: string } {
  switch (kind) {
    case 'header-flips':
    case 'flips': {
      if (bytes.length === 0) return { bytes, note: 'empty' };
      const span = kind === 'header-flips' ? Math.min(bytes.length, 4096) : bytes.length;
      const n = 1 + rng.below(kind === 'header-flips' ? 8 : 16);
      for (let j = 0; j < n; j++) {
        const at = rng.below(span);
        bytes[at] = rng.below(2) === 0 ? bytes[at]! ^ (1 << rng.below(8)) : rng.below(256);
      }
      return { bytes, note: `${n}-bytes` };
    }
    case 'truncate': {
      const limit = rng.below(2) === 0 ? Math.min(bytes.length, 4096) : bytes.length;
      const length = rng.below(limit);
      return { bytes: new Uint8Array(bytes.subarray(0, length)), note: `len=${length}` };
    }
    case 'phdr-field': {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const phoff = bytes.length >= 64 ? Number(view.getBigUint64(32, true)) : 0;
      const phnum = bytes.length >= 64 ? view.getUint16(56, true) : 0;
      // Mutate a real program header when the table is intact, else somewhere in the header area.
      const index = rng.below(Math.max(1, Math.min(phnum, 64)));
      const tableOk = phnum > 0 && phoff + (index + 1) * 56 <= bytes.length;
      const field = rng.pick(PHDR_FIELDS);
      const offset = (tableOk ? phoff + index * 56 : 64 + rng.below(8) * 56) + field.offset;
      const value = setField(bytes, { ...field, offset }, rng);
      return { bytes, note: `ph${index}.${field.name}=0x${value.toString(16)}` };
    }
    case 'ehdr-field': {
      const field = rng.pick(EHDR_FIELDS);
      const value = setField(bytes, field, rng);
      return { bytes, note: `${field.name}=0x${value.toString(16)}` };
    }
    default:
      throw new Error(`unknown mutation ${kind}`);
  }
}

/** Sets a little-endian field to an edge value, a small change of its value, or noise. */
function setField(bytes: Uint8Array, field: Field, rng: Xorshift32): bigint {
  if (field.offset + field.width > bytes.length) return 0n;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bits = BigInt(field.width * 8);
  const mask = (1n << bits) - 1n;
  const old = readField(view, field);
  const choice = rng.below(4);
  let value =
    choice === 0 ? rng.pick(field.width === 8 ? EDGE_VALUES_64 : EDGE_VALUES_SMALL)
      : choice === 1 ? old + BigInt(rng.pick([-4096, -64, -1, 1, 8, 64, 4096, 0x200000]))
        : choice === 2 ? old ^ (1n << BigInt(rng.below(field.width * 8)))
          : rng.u64();
  value &= mask;
  if (field.width === 1) view.setUint8(field.offset, Number(value));
  else if (field.width === 2) view.setUint16(field.offset, Number(value), true);
  else if (field.width === 4) view.setUint32(field.offset, Number(value), true);
  else view.setBigUint64(field.offset, value, true);
  return value;
}

function readField(view: DataView, field: Field): bigint {
  if (field.width === 1) return BigInt(view.getUint8(field.offset));
  if (field.width === 2) return BigInt(view.getUint16(field.offset, true));
  if (field.width === 4) return BigInt(view.getUint32(field.offset, true));
  return view.getBigUint64(field.offset, true);
}
