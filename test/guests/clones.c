/* Hostile and edge uses of clone, clone3 and futex through raw syscalls, each printing its result
 * and errno: the same output natively and in tskvm. With argument `badstack`, a thread starts on
 * a stack that is not mapped (the process dies of SIGSEGV); with `many`, threads are made until
 * clone fails, and the count and errno are printed; with `forks`, the calls that would make another
 * process (tskvm only: natively they would succeed). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* linux/futex.h's values (musl's compiler has no kernel headers). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_WAIT_BITSET 9
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_WAIT_PRIVATE (FUTEX_WAIT | FUTEX_PRIVATE_FLAG)
#define FUTEX_OP_ADD 1
#define FUTEX_OP_CMP_EQ 0
#define FUTEX_OP(op, oparg, cmp, cmparg) \
  (((op & 0xf) << 28) | ((cmp & 0xf) << 24) | ((oparg & 0xfff) << 12) | (cmparg & 0xfff))
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

struct clone_args_v2 {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static void show(const char *what, long r) {
  printf("%-40s %ld %s\n", what, r, r < 0 ? strerror(errno) : "");
}

static long futex(void *addr, int op, int val, const struct timespec *ts, void *addr2, int val3) {
  return syscall(SYS_futex, addr, op, val, ts, addr2, val3);
}

static void *idle(void *arg) {
  for (;;) pause();
  return arg;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "badstack") == 0) {
    /* A thread whose stack is unmapped: its first push faults, and that kills the process. */
    long r = syscall(SYS_clone, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
                     (void *)0x10, NULL, NULL, 0);
    if (r == 0) { __asm__ volatile("push %rax; push %rax"); for (;;) { } }
    struct timespec ts = { 1, 0 };
    nanosleep(&ts, NULL);
    printf("still here: %ld\n", r);
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "many") == 0) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int n = 0, err = 0;
    for (; n < 100000; n++) {
      pthread_t t;
      if ((err = pthread_create(&t, &attr, idle, NULL)) != 0) break;
    }
    printf("made %d threads, then %s\n", n, strerror(err));
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "forks") == 0) {
    show("clone, fork flags", syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    show("clone, vfork flags", syscall(SYS_clone, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0));
    show("fork", syscall(SYS_fork));
    show("vfork", syscall(SYS_vfork));
    show("execve", syscall(SYS_execve, "/bin/true", NULL, NULL));
    return 0;
  }
  uint32_t word = 5;
  struct timespec short_wait = { 0, 1000 * 1000 };
  struct timespec bad_ts = { 0, 2000000000L };
  struct clone_args_v2 ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD;
  show("clone3, size 8", syscall(SYS_clone3, &ca, 8));
  show("clone3, size 8192", syscall(SYS_clone3, &ca, 8192));
  static unsigned char big[128];
  memcpy(big, &ca, sizeof ca);
  big[100] = 1;
  show("clone3, nonzero past the struct", syscall(SYS_clone3, big, sizeof big));
  ca.exit_signal = SIGCHLD;
  show("clone3, thread with exit signal", syscall(SYS_clone3, &ca, 64));
  ca.exit_signal = 0;
  ca.stack = 0x100000;
  show("clone3, stack without size", syscall(SYS_clone3, &ca, 64));
  show("clone3, bad pointer", syscall(SYS_clone3, (void *)8, 64));
  ca.stack = 0;
  ca.flags |= CLONE_SETTLS;
  ca.tls = 0x800000000000ULL;
  show("clone3, non-canonical tls", syscall(SYS_clone3, &ca, 64));
  show("futex, unaligned", futex((char *)&word + 1, FUTEX_WAKE, 1, NULL, NULL, 0));
  show("futex, bad address", futex((void *)8, FUTEX_WAIT, 5, NULL, NULL, 0));
  show("futex, wake bad address", futex((void *)8, FUTEX_WAKE, 1, NULL, NULL, 0));
  show("futex, value differs", futex(&word, FUTEX_WAIT, 6, NULL, NULL, 0));
  show("futex, timeout", futex(&word, FUTEX_WAIT_PRIVATE, 5, &short_wait, NULL, 0));
  show("futex, bad timeout", futex(&word, FUTEX_WAIT, 5, &bad_ts, NULL, 0));
  show("futex, bitset 0", futex(&word, FUTEX_WAIT_BITSET, 5, NULL, NULL, 0));
  show("futex, wake nobody", futex(&word, FUTEX_WAKE, 10, NULL, NULL, 0));
  show("futex, cmp_requeue differs", futex(&word, FUTEX_CMP_REQUEUE, 1, (void *)1, &word, 4));
  show("futex, cmp_requeue", futex(&word, FUTEX_CMP_REQUEUE, 1, (void *)1, &word, 5));
  show("futex, wake_op", futex(&word, FUTEX_WAKE_OP, 1, (void *)1, &word, FUTEX_OP(FUTEX_OP_ADD, 2, FUTEX_OP_CMP_EQ, 5)));
  printf("word after wake_op: %u\n", word);
  show("futex, wake_op bad op", futex(&word, FUTEX_WAKE_OP, 1, (void *)1, &word, 7 << 28));
  show("futex, unknown op", futex(&word, 99, 1, NULL, NULL, 0));
  show("futex, realtime wake", futex(&word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, NULL, NULL, 0));
  show("set_robust_list, bad size", syscall(SYS_set_robust_list, NULL, 8));
  show("get_robust_list, no such tid", syscall(SYS_get_robust_list, 999999, &word, &word));
  show("gettid is pid", syscall(SYS_gettid) == getpid());
  return 0;
}
