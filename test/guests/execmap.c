/*
 * Executable file mappings, as the dynamic loader makes them: the bytes of a function ("mov $42,
 * %eax; ret", found in this program's own file) mapped from the file and called. Each mode ends the
 * way Linux ends it, so every run is compared with the native one:
 *   exec      map PROT_READ, read it (so that any cached translation says no-execute), mprotect to
 *             PROT_READ|PROT_EXEC, call: prints 42
 *   mapexec   map PROT_READ|PROT_EXEC at once, call: prints 42
 *   noexec    map PROT_READ only, call: SIGSEGV
 *   revoke    map with PROT_EXEC, call, mprotect to PROT_READ, call again: 42 then SIGSEGV
 *   unmap     map with PROT_EXEC, call, MAP_FIXED anonymous read-write memory over it with the same
 *             bytes copied in, call: 42 then SIGSEGV (anonymous memory is not executable)
 *   fixed     reserve PROT_NONE, MAP_FIXED the file over it with PROT_EXEC (the loader's way), call: 42
 *   spread    reserve 700 × 2 MiB, map the code with PROT_EXEC into each 2 MiB until a mapping fails:
 *             prints "mapped N" (and the error, if one failed), then calls the first: 42. Natively all
 *             700 succeed; tskvm, which needs a page table of its own for each 2 MiB that holds code
 *             beside no-execute memory, runs out of them first (ENOMEM, as Linux past max_map_count)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The function's bytes, after a marker that makes them easy to find in the file. */
__attribute__((used)) static const unsigned char code[] = {
  'T', 'S', 'K', 'V', 'M', '-', 'E', 'X', 'E', 'C', '-', 'M', 'A', 'R', 'K', '!',
  0xb8, 42, 0, 0, 0, 0xc3,
};

static int fd;
static long offset; /* of the function in the file */
static long page;

static void locate(const char *self) {
  fd = open(self, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) { perror("open self"); exit(2); }
  unsigned char *all = malloc(st.st_size);
  if (pread(fd, all, st.st_size, 0) != st.st_size) { perror("pread"); exit(2); }
  for (long i = 0; i + (long)sizeof code <= st.st_size; i++) {
    if (memcmp(all + i, code, sizeof code) == 0) {
      offset = i + 16;
      free(all);
      return;
    }
  }
  fprintf(stderr, "marker not found\n");
  exit(2);
}

static int call(unsigned char *base) {
  int (*fn)(void) = (int (*)(void))(base + offset % page);
  return fn();
}

static unsigned char *map(void *at, int prot, int flags) {
  unsigned char *m = mmap(at, 2 * page, prot, MAP_PRIVATE | flags, fd, offset - offset % page);
  if (m == MAP_FAILED) { perror("mmap"); exit(2); }
  return m;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: execmap MODE\n"); return 2; }
  page = sysconf(_SC_PAGESIZE);
  locate("/proc/self/exe");
  const char *mode = argv[1];
  setvbuf(stdout, NULL, _IONBF, 0);
  if (!strcmp(mode, "exec")) {
    unsigned char *m = map(NULL, PROT_READ, 0);
    volatile unsigned char first = m[offset % page];
    (void)first;
    if (mprotect(m, 2 * page, PROT_READ | PROT_EXEC) != 0) { perror("mprotect"); return 2; }
    printf("%d\n", call(m));
  } else if (!strcmp(mode, "mapexec")) {
    printf("%d\n", call(map(NULL, PROT_READ | PROT_EXEC, 0)));
  } else if (!strcmp(mode, "noexec")) {
    unsigned char *m = map(NULL, PROT_READ, 0);
    printf("read %d\n", m[offset % page]);
    printf("%d\n", call(m));
  } else if (!strcmp(mode, "revoke")) {
    unsigned char *m = map(NULL, PROT_READ | PROT_EXEC, 0);
    printf("%d\n", call(m));
    if (mprotect(m, 2 * page, PROT_READ) != 0) { perror("mprotect"); return 2; }
    printf("%d\n", call(m));
  } else if (!strcmp(mode, "unmap")) {
    unsigned char *m = map(NULL, PROT_READ | PROT_EXEC, 0);
    printf("%d\n", call(m));
    unsigned char copy[64];
    memcpy(copy, m + offset % page, sizeof copy);
    if (mmap(m, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != m) { perror("mmap fixed"); return 2; }
    memcpy(m + offset % page, copy, sizeof copy);
    printf("%d\n", call(m));
  } else if (!strcmp(mode, "fixed")) {
    unsigned char *r = mmap(NULL, 8 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) { perror("reserve"); return 2; }
    printf("%d\n", call(map(r + 2 * page, PROT_READ | PROT_EXEC, MAP_FIXED)));
  } else if (!strcmp(mode, "spread")) {
    const long huge = 2L << 20, count = 700;
    unsigned char *r = mmap(NULL, count * huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) { perror("reserve"); return 2; }
    unsigned char *first = NULL;
    long mapped = 0;
    for (; mapped < count; mapped++) {
      unsigned char *at = (unsigned char *)(((uintptr_t)r + huge - 1) / huge * huge) + mapped * huge;
      if (at + 2 * page > r + count * huge) break;
      unsigned char *m = mmap(at, 2 * page, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, offset - offset % page);
      if (m == MAP_FAILED) { printf("mapped %ld: %s\n", mapped, strerror(errno)); break; }
      if (!first) first = m;
    }
    if (mapped == count || first == NULL) printf("mapped %ld\n", mapped);
    printf("%d\n", call(first));
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return 0;
}
