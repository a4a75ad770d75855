/**
 * Real static programs for the ELF tests, compiled on the spot from a C string so the
 * tests follow whatever toolchain the machine has (glibc's gcc, musl-gcc).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Uses stdio, TLS (errno) and .bss, so every usual segment kind is present. */
export const HELLO_C = `
#include <errno.h>
#include <stdio.h>
static char buffer[65536];
int main(int argc, char **argv) {
  errno = 0;
  snprintf(buffer, sizeof buffer, "hello from %s", argc > 0 ? argv[0] : "?");
  puts(buffer);
  return errno;
}
`;

export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Compiles `source` with `compiler` and `flags`, returns the program's bytes. */
export function compileC(compiler: string, flags: string[], source = HELLO_C): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'tskvm-elf-'));
  try {
    writeFileSync(join(dir, 'prog.c'), source);
    execFileSync(compiler, [...flags, '-O2', '-o', join(dir, 'prog'), join(dir, 'prog.c')], { stdio: 'pipe' });
    return new Uint8Array(readFileSync(join(dir, 'prog')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
