/**
 * Types for the parts of `elfy` (a CommonJS package without its own typings) that
 * tskvm uses. Field names and value spellings are elfy's own (lib/elfy/parser.js,
 * lib/elfy/constants.js): numbers above 2^53 lose precision, unknown enum values
 * come back as `undefined`.
 */
declare module 'elfy' {
  export interface ElfyHeader {
    class: 'none' | '32' | '64' | 'num' | undefined;
    endian: 'none' | 'lsb' | 'msb' | 'num' | undefined;
    type: 'none' | 'rel' | 'exec' | 'dyn' | 'core' | 'num' | undefined;
    machine: string | undefined;
    entry: number;
    phoff: number;
    shoff: number;
    phentsize: number;
    phnum: number;
    shentsize: number;
    shnum: number;
    shstrndx: number;
  }

  export interface ElfyProgram {
    /** 'load' | 'interp' | 'phdr' | 'tls' | 'dynamic' | 'note' | 'gnu_stack' …; undefined when elfy has no name for it. */
    type: string | undefined;
    offset: number;
    vaddr: number;
    paddr: number;
    filesz: number;
    memsz: number;
    flags: { r?: true; w?: true; x?: true; [bit: string]: true | undefined };
    align: number;
    data: Buffer;
  }

  export interface ElfyFile extends ElfyHeader {
    body: { programs: ElfyProgram[]; sections: unknown[] };
  }

  export class Parser {
    parseHeader(buf: Buffer): ElfyHeader;
    parsePrograms(buf: Buffer, header: ElfyHeader): ElfyProgram[];
    execute(buf: Buffer): ElfyFile;
  }

  const elfy: {
    parse(buf: Buffer): ElfyFile;
    Parser: typeof Parser;
    constants: Record<string, Record<number, string>>;
  };
  export default elfy;
}
