/* Signal delivery, one case per argument: handlers, their frames, faults, timers, masks, the
 * alternate stack, and frames a handler corrupts. Prints only what is the same natively and under
 * tskvm (no addresses, no pids), so test/signals.test.ts compares the two byte for byte. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static sigjmp_buf jump;
static volatile sig_atomic_t hits;
static volatile int last_signo, last_code, last_errno_seen;
static volatile uintptr_t last_addr;
static volatile int last_pid_is_self;
static char order[64];
static volatile int order_len;

static void note(char c) { if (order_len < 63) order[order_len++] = c; }

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = fn;
  sa.sa_flags = SA_SIGINFO | flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) != 0) { perror("sigaction"); exit(99); }
}

static void record(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  hits++;
  last_signo = si->si_signo;
  last_code = si->si_code;
  last_addr = (uintptr_t)si->si_addr;
  last_pid_is_self = si->si_pid == getpid();
  (void)sig;
}

static void jump_back(int sig, siginfo_t *si, void *uc) {
  record(sig, si, uc);
  siglongjmp(jump, 1);
}

/* raise() and kill() to self reach the handler with their siginfo. */
static int case_raise(void) {
  install(SIGUSR1, record, 0);
  raise(SIGUSR1);
  printf("raise: hits=%d signo=%d code=%d pid_is_self=%d\n", hits, last_signo, last_code, last_pid_is_self);
  install(SIGUSR2, record, 0);
  kill(getpid(), SIGUSR2);
  printf("kill: hits=%d signo=%d code=%d pid_is_self=%d\n", hits, last_signo, last_code, last_pid_is_self);
  signal(SIGUSR1, SIG_IGN);
  raise(SIGUSR1);
  printf("ignored: hits=%d\n", hits);
  return 0;
}

static void nest(int sig, siginfo_t *si, void *uc) {
  (void)si; (void)uc;
  note('(');
  if (hits++ == 0) raise(sig);
  note(')');
}

/* Without SA_NODEFER the signal is blocked in its own handler: the second one waits. */
static int case_nodefer(void) {
  install(SIGUSR1, nest, 0);
  raise(SIGUSR1);
  order[order_len] = 0;
  printf("deferred: %s\n", order);
  hits = 0; order_len = 0;
  install(SIGUSR1, nest, SA_NODEFER);
  raise(SIGUSR1);
  order[order_len] = 0;
  printf("nodefer: %s\n", order);
  return 0;
}

/* SA_RESETHAND: the handler runs once, then the default action (death by SIGUSR1). */
static int case_resethand(void) {
  install(SIGUSR1, record, SA_RESETHAND);
  raise(SIGUSR1);
  struct sigaction now;
  sigaction(SIGUSR1, NULL, &now);
  printf("resethand: hits=%d handler_is_default=%d\n", hits, now.sa_handler == SIG_DFL);
  fflush(stdout);
  raise(SIGUSR1);
  printf("not reached\n");
  return 0;
}

/* A blocked signal waits (sigpending shows it) until sigsuspend opens the mask. */
static int case_mask(void) {
  install(SIGUSR1, record, 0);
  sigset_t block, old, pending, none;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, &old);
  raise(SIGUSR1);
  sigpending(&pending);
  printf("blocked: hits=%d pending=%d\n", hits, sigismember(&pending, SIGUSR1));
  sigemptyset(&none);
  int r = sigsuspend(&none);
  printf("sigsuspend: r=%d errno=%s hits=%d\n", r, r < 0 && errno == EINTR ? "EINTR" : "?", hits);
  sigset_t after;
  sigprocmask(SIG_SETMASK, NULL, &after);
  printf("mask back: %d\n", sigismember(&after, SIGUSR1));
  /* sigtimedwait takes a blocked signal without running the handler, and times out on none. */
  raise(SIGUSR1);
  siginfo_t si;
  r = sigtimedwait(&block, &si, &(struct timespec){ 0, 0 });
  printf("sigtimedwait: %d code=%d hits=%d\n", r, si.si_code, hits);
  r = sigtimedwait(&block, &si, &(struct timespec){ 0, 20 * 1000 * 1000 });
  printf("sigtimedwait timeout: %d %s\n", r, r < 0 && errno == EAGAIN ? "EAGAIN" : "?");
  return 0;
}

static volatile uint32_t handler_mxcsr;

static void clobber(int sig, siginfo_t *si, void *uc) {
  (void)sig; (void)si; (void)uc;
  uint32_t m;
  __asm__ volatile("stmxcsr %0" : "=m"(m));
  handler_mxcsr = m;
  __asm__ volatile(
      "pcmpeqd %%xmm0, %%xmm0\n pcmpeqd %%xmm1, %%xmm1\n pcmpeqd %%xmm7, %%xmm7\n pcmpeqd %%xmm8, %%xmm8\n"
      "pcmpeqd %%xmm15, %%xmm15\n"
      ::: "xmm0", "xmm1", "xmm7", "xmm8", "xmm15");
  uint32_t round_up = 0x5f80;
  __asm__ volatile("ldmxcsr %0" :: "m"(round_up));
  hits++;
}

/* The vector registers, MXCSR and x87 survive a handler that clobbers them; the handler starts with MXCSR's default. */
static int case_fpu(void) {
  install(SIGUSR1, clobber, 0);
  uint32_t rz = 0x7f80, m;
  __asm__ volatile("ldmxcsr %0" :: "m"(rz));
  uint64_t in[2] = { 0x0123456789abcdefULL, 0xfedcba9876543210ULL }, out0[2], out8[2], out15[2];
  /* The signal itself, with the registers loaded: raise from asm so nothing in between touches them. */
  __asm__ volatile(
      "movdqu %3, %%xmm0\n movdqu %3, %%xmm8\n movdqu %3, %%xmm15\n"
      "mov $39, %%eax\n syscall\n mov %%eax, %%edi\n mov $10, %%esi\n mov $62, %%eax\n syscall\n"  /* kill(getpid(), SIGUSR1) */
      "movdqu %%xmm0, %0\n movdqu %%xmm8, %1\n movdqu %%xmm15, %2\n"
      : "=m"(out0), "=m"(out8), "=m"(out15) : "m"(in) : "rax", "rdi", "rsi", "rcx", "r11", "memory", "xmm0", "xmm8", "xmm15");
  __asm__ volatile("stmxcsr %0" : "=m"(m));
  int same = !memcmp(in, out0, 16) && !memcmp(in, out8, 16) && !memcmp(in, out15, 16);
  printf("fpu: hits=%d xmm_kept=%d mxcsr_in_handler=%#x mxcsr_after=%#x\n", hits, same, handler_mxcsr, m);
  return 0;
}

/* A fault to a handler that jumps out; the mask comes back with siglongjmp, so it works twice. */
static int case_segv(void) {
  install(SIGSEGV, jump_back, 0);
  for (int i = 0; i < 2; i++) {
    if (sigsetjmp(jump, 1) == 0) {
      { volatile int *bad = (volatile int *)(uintptr_t)0x18; __asm__("" : "+r"(bad)); *bad = 1; }
      printf("not reached\n");
    }
    printf("segv %d: signo=%d code=%d addr=%#lx\n", i, last_signo, last_code, (unsigned long)last_addr);
  }
  return 0;
}

static int fixed_value = 4242;

static void fix_rax(int sig, siginfo_t *si, void *ucv) {
  record(sig, si, ucv);
  ucontext_t *uc = ucv;
  uc->uc_mcontext.gregs[REG_RAX] = (greg_t)(uintptr_t)&fixed_value;
}

/* JVM-style: the handler repairs the faulting context and returns; the load runs again and succeeds. */
static int case_fixup(void) {
  install(SIGSEGV, fix_rax, 0);
  long got;
  __asm__ volatile("mov $0x20, %%rax\n mov (%%rax), %%rbx\n mov %%rbx, %0" : "=r"(got) :: "rax", "rbx");
  printf("fixup: hits=%d value=%ld code=%d addr=%#lx\n", hits, got, last_code, (unsigned long)last_addr);
  return 0;
}

/* SIGFPE from integer division by zero, SIGILL from ud2, SIGTRAP from int3. */
static int case_traps(void) {
  install(SIGFPE, jump_back, 0);
  install(SIGILL, jump_back, 0);
  install(SIGTRAP, record, 0);
  volatile int zero = 0, r = 1;
  if (sigsetjmp(jump, 1) == 0) r = 10 / zero;
  printf("fpe: signo=%d code=%d addr_set=%d r=%d\n", last_signo, last_code, last_addr != 0, r);
  if (sigsetjmp(jump, 1) == 0) __asm__ volatile("ud2");
  printf("ill: signo=%d code=%d addr_set=%d\n", last_signo, last_code, last_addr != 0);
  __asm__ volatile("int3");
  printf("trap: signo=%d code=%d hits=%d\n", last_signo, last_code, hits);
  return 0;
}

static char *alt_base;
static size_t alt_size = 64 * 1024;
static volatile int on_alt, alt_flags, change_errno;

static void on_alt_stack(int sig, siginfo_t *si, void *uc) {
  (void)sig; (void)si; (void)uc;
  char local;
  on_alt = &local > alt_base && &local < alt_base + alt_size;
  stack_t now, other = { .ss_sp = alt_base, .ss_size = alt_size, .ss_flags = 0 };
  sigaltstack(NULL, &now);
  alt_flags = now.ss_flags;
  change_errno = sigaltstack(&other, NULL) == 0 ? 0 : errno;
  hits++;
}

static int depth(int n) {
  volatile char pad[1024];
  pad[0] = (char)n;
  return n == 0 ? 0 : depth(n + 1) + pad[0];
}

/* SA_ONSTACK runs the handler on the alternate stack, which reports SS_ONSTACK and cannot change meanwhile. */
static int case_altstack(void) {
  alt_base = malloc(alt_size);
  stack_t ss = { .ss_sp = alt_base, .ss_size = alt_size, .ss_flags = 0 }, old;
  if (sigaltstack(&ss, &old) != 0) { perror("sigaltstack"); return 1; }
  printf("old: disabled=%d\n", old.ss_flags == SS_DISABLE);
  install(SIGUSR1, on_alt_stack, SA_ONSTACK);
  raise(SIGUSR1);
  printf("altstack: hits=%d on_alt=%d flags_onstack=%d change=%s\n", hits, on_alt, alt_flags == SS_ONSTACK,
         change_errno == EPERM ? "EPERM" : "?");
  sigaltstack(NULL, &old);
  printf("after: flags=%d\n", old.ss_flags);
  ss.ss_size = 100;
  printf("too small: %s\n", sigaltstack(&ss, NULL) < 0 && errno == ENOMEM ? "ENOMEM" : "?");
  /* The classic: a stack overflow caught on the alternate stack. */
  install(SIGSEGV, jump_back, SA_ONSTACK);
  if (sigsetjmp(jump, 1) == 0) depth(1);
  printf("overflow: signo=%d\n", last_signo);
  return 0;
}

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig) { (void)sig; alarmed++; }

/* SIGALRM from setitimer interrupts a loop that makes no syscall, and a sleep (EINTR, time left). */
static int case_alarm(void) {
  signal(SIGALRM, on_alarm);
  struct itimerval it = { .it_value = { 0, 30 * 1000 } };
  setitimer(ITIMER_REAL, &it, NULL);
  while (!alarmed) { }
  printf("busy loop interrupted: %d\n", alarmed);
  struct itimerval now;
  getitimer(ITIMER_REAL, &now);
  printf("disarmed: %d\n", now.it_value.tv_sec == 0 && now.it_value.tv_usec == 0);
  setitimer(ITIMER_REAL, &it, NULL);
  struct timespec req = { 5, 0 }, rem = { 0, 0 };
  int r = nanosleep(&req, &rem);
  printf("nanosleep: r=%d %s rem_ok=%d alarmed=%d\n", r, r < 0 && errno == EINTR ? "EINTR" : "?", rem.tv_sec >= 3 && rem.tv_sec < 5, alarmed);
  printf("alarm: %u\n", alarm(10));
  printf("alarm again: %u\n", alarm(0));
  /* Periodic: three ticks, waited for with pause(). */
  alarmed = 0;
  struct itimerval tick = { .it_interval = { 0, 10 * 1000 }, .it_value = { 0, 10 * 1000 } };
  setitimer(ITIMER_REAL, &tick, NULL);
  while (alarmed < 3) pause();
  setitimer(ITIMER_REAL, &(struct itimerval){ 0 }, NULL);
  printf("ticks: %d\n", alarmed >= 3);
  /* A read of an empty pipe: EINTR without SA_RESTART. */
  int fds[2];
  if (pipe(fds) != 0) { perror("pipe"); return 1; }
  struct sigaction sa = { .sa_handler = on_alarm };
  sigaction(SIGALRM, &sa, NULL);
  setitimer(ITIMER_REAL, &it, NULL);
  char c;
  r = (int)read(fds[0], &c, 1);
  printf("read: r=%d %s\n", r, r < 0 && errno == EINTR ? "EINTR" : "?");
  return 0;
}

/* A fast periodic timer whose signal is blocked: one pending SIGALRM, delivered once when unblocked. */
static int case_blocked_timer(void) {
  signal(SIGALRM, on_alarm);
  sigset_t s, pending;
  sigemptyset(&s);
  sigaddset(&s, SIGALRM);
  sigprocmask(SIG_BLOCK, &s, NULL);
  struct itimerval fast = { .it_interval = { 0, 1 }, .it_value = { 0, 1 } };
  setitimer(ITIMER_REAL, &fast, NULL);
  volatile unsigned long x = 0;
  for (unsigned long i = 0; i < 50000000; i++) x += i;
  sigpending(&pending);
  printf("pending=%d alarmed=%d\n", sigismember(&pending, SIGALRM), alarmed);
  setitimer(ITIMER_REAL, &(struct itimerval){ 0 }, NULL);
  sigprocmask(SIG_UNBLOCK, &s, NULL);
  printf("after unblock: alarmed=%d\n", alarmed);
  return 0;
}

static int restart_pipe[2];
static void tick_then_write(int sig) {
  (void)sig;
  if (++alarmed == 3) { char c = 'x'; if (write(restart_pipe[1], &c, 1) != 1) _exit(98); }
}

/* With SA_RESTART the read goes on after each handler, until the third one gives it a byte. */
static int case_restart(void) {
  if (pipe(restart_pipe) != 0) { perror("pipe"); return 1; }
  struct sigaction sa = { .sa_handler = tick_then_write, .sa_flags = SA_RESTART };
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval tick = { .it_interval = { 0, 10 * 1000 }, .it_value = { 0, 10 * 1000 } };
  setitimer(ITIMER_REAL, &tick, NULL);
  char c = 0;
  int r = (int)read(restart_pipe[0], &c, 1);
  setitimer(ITIMER_REAL, &(struct itimerval){ 0 }, NULL);
  /* The third tick gives the byte; more may come before the timer is stopped where time runs slow
     (an emulated CPU): what counts is that the read went on, not how many ticks it saw after. */
  printf("restarted read: r=%d c=%c ticks=%s\n", r, c, alarmed >= 3 ? "3 or more" : alarmed == 2 ? "2" : alarmed == 1 ? "1" : "0");
  return 0;
}

static volatile int timer_value;
static void on_timer(int sig, siginfo_t *si, void *uc) {
  record(sig, si, uc);
  timer_value = si->si_value.sival_int;
}

/* A POSIX timer: SI_TIMER, its sigev_value, gettime's interval, delete. */
static int case_timer(void) {
  install(SIGUSR2, on_timer, 0);
  struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2, .sigev_value.sival_int = 42 };
  timer_t id;
  if (timer_create(CLOCK_MONOTONIC, &sev, &id) != 0) { perror("timer_create"); return 1; }
  struct itimerspec spec = { .it_interval = { 0, 10 * 1000 * 1000 }, .it_value = { 0, 10 * 1000 * 1000 } }, got;
  timer_settime(id, 0, &spec, NULL);
  while (hits < 3) { }
  timer_gettime(id, &got);
  printf("timer: hits>=3 code=%d value=%d interval_ms=%ld\n", last_code, timer_value, got.it_interval.tv_nsec / 1000000);
  int first = timer_delete(id);
  printf("delete: %d again: %d\n", first, timer_delete(id));
  timer_t rt;
  sev.sigev_value.sival_int = 7;
  hits = 0;
  timer_create(CLOCK_REALTIME, &sev, &rt);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  now.tv_nsec += 20 * 1000 * 1000;
  if (now.tv_nsec >= 1000000000) { now.tv_sec++; now.tv_nsec -= 1000000000; }
  timer_settime(rt, TIMER_ABSTIME, &(struct itimerspec){ .it_value = now }, NULL);
  while (!hits) { }
  printf("absolute realtime timer: value=%d\n", timer_value);
  return 0;
}

static void tamper(int sig, siginfo_t *si, void *ucv) {
  (void)sig; (void)si;
  ucontext_t *uc = ucv;
  const char *how = getenv("TAMPER");
  if (!strcmp(how, "iopl")) uc->uc_mcontext.gregs[REG_EFL] |= 0x3000 | 0x4000; /* IOPL 3, NT */
  else if (!strcmp(how, "fpstate")) uc->uc_mcontext.fpregs = (fpregset_t)(uintptr_t)0x1000;
  else if (!strcmp(how, "mxcsr")) uc->uc_mcontext.fpregs->mxcsr = 0xffffffff;
  else if (!strcmp(how, "magic")) ((uint32_t *)uc->uc_mcontext.fpregs)[464 / 4] = 0; /* fxsave only */
  else if (!strcmp(how, "rip")) uc->uc_mcontext.gregs[REG_RIP] = 0x7000;
  else if (!strcmp(how, "rsp")) uc->uc_mcontext.gregs[REG_RSP] = 0x18;
  else if (!strcmp(how, "rip-noncanonical")) uc->uc_mcontext.gregs[REG_RIP] = (greg_t)0x8000000000001000ULL;
  else if (!strcmp(how, "rsp-noncanonical")) uc->uc_mcontext.gregs[REG_RSP] = (greg_t)0x8000000000001000ULL;
  else if (!strcmp(how, "xfeatures")) ((uint64_t *)uc->uc_mcontext.fpregs)[512 / 8] |= 1ULL << 62;
  else if (!strcmp(how, "mask")) sigfillset(&uc->uc_sigmask);
  hits++;
}

/* A handler rewrites its frame: rt_sigreturn gives back only what a process may have. */
static int case_hostile(void) {
  install(SIGUSR1, tamper, 0);
  raise(SIGUSR1);
  unsigned long flags;
  __asm__ volatile("pushf\n pop %0" : "=r"(flags));
  printf("back: hits=%d iopl=%lu nt=%lu\n", hits, (flags >> 12) & 3, (flags >> 14) & 1);
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  printf("kill/stop blockable: %d %d\n", sigismember(&now, SIGKILL), sigismember(&now, SIGSTOP));
  fflush(stdout);
  __asm__ volatile("cli");  /* still not allowed: SIGSEGV */
  printf("cli allowed\n");
  return 0;
}

/* A fault whose signal is blocked kills, handler or not; so does a handler with a frame nowhere to go. */
static int case_blocked_fault(void) {
  install(SIGSEGV, record, 0);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGSEGV);
  sigprocmask(SIG_BLOCK, &s, NULL);
  printf("faulting\n");
  fflush(stdout);
  *(volatile int *)0 = 1;
  return 0;
}

static int case_bad_altstack(void) {
  void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  stack_t ss = { .ss_sp = p, .ss_size = 65536 };
  sigaltstack(&ss, NULL);
  munmap(p, 65536);
  install(SIGUSR1, record, SA_ONSTACK);
  /* With a SIGSEGV handler on the ordinary stack, the failed delivery becomes a SIGSEGV it takes. */
  if (getenv("SEGV_HANDLER")) install(SIGSEGV, jump_back, 0);
  printf("raising\n");
  fflush(stdout);
  if (sigsetjmp(jump, 1) == 0) raise(SIGUSR1);
  else printf("caught: signo=%d code=%d\n", last_signo, last_code);
  printf("after: usr1 hits=%d\n", hits - (last_signo == SIGSEGV));
  return 0;
}

static volatile int frame_checks[9];

static void inspect(int sig, siginfo_t *si, void *ucv) {
  (void)sig;
  ucontext_t *uc = ucv;
  uintptr_t frame = (uintptr_t)uc - 8, fp = (uintptr_t)uc->uc_mcontext.fpregs;
  uint32_t *sw = (uint32_t *)(fp + 464);
  uint32_t xstate_size = sw[4];
  frame_checks[0] = frame % 16 == 8;                                  /* rsp ≡ 8 (mod 16) at entry */
  frame_checks[1] = *(uintptr_t *)frame != 0;                         /* pretcode: the restorer */
  frame_checks[2] = (uintptr_t)si == (uintptr_t)uc + 304;             /* siginfo right after the ucontext */
  frame_checks[3] = fp % 64 == 0 && fp >= (uintptr_t)si + 128 && fp < (uintptr_t)si + 128 + 64 + 16;
  frame_checks[4] = uc->uc_flags == 7;                                /* FP_XSTATE | SIGCONTEXT_SS | STRICT_RESTORE_SS */
  frame_checks[5] = sw[0] == 0x46505853 && sw[1] == xstate_size + 4;  /* FP_XSTATE_MAGIC1, extended_size */
  frame_checks[6] = *(uint32_t *)(fp + xstate_size) == 0x46505845;    /* FP_XSTATE_MAGIC2 */
  frame_checks[7] = fp + xstate_size + 4 <= (uintptr_t)uc->uc_mcontext.gregs[REG_RSP] - 128; /* the red zone skipped */
  frame_checks[8] = uc->uc_mcontext.gregs[REG_CSGSFS] == 0x2b000000000033LL; /* cs 0x33, gs 0, fs 0, ss 0x2b */
}

/* The frame's layout as Linux builds it, checked from inside the handler. */
static int case_frame(void) {
  install(SIGUSR1, inspect, 0);
  raise(SIGUSR1);
  printf("frame:");
  for (unsigned i = 0; i < sizeof frame_checks / sizeof frame_checks[0]; i++) printf(" %d", frame_checks[i]);
  printf("\n");
  return 0;
}

/* A handler at an address no code can be at: the delivery itself faults (SIGSEGV). */
static int case_bad_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = (void (*)(int))(uintptr_t)(getenv("LOW") ? 0x10ULL : 0x8000000000001000ULL);
  sigaction(SIGUSR1, &sa, NULL);
  printf("raising\n");
  fflush(stdout);
  raise(SIGUSR1);
  printf("not reached\n");
  return 0;
}

static long sys(long nr, long a, long b, long c, long d) {
  long r = syscall(nr, a, b, c, d);
  return r < 0 ? -errno : r;
}

/* Bad arguments get Linux's errno (the raw syscalls, so no libc check comes first). */
static int case_errors(void) {
  char act[32] = { 0 }, buf[64];
  printf("sigaction sig 0: %ld\n", sys(SYS_rt_sigaction, 0, (long)act, 0, 8));
  printf("sigaction sig 65: %ld\n", sys(SYS_rt_sigaction, 65, (long)act, 0, 8));
  printf("sigaction SIGKILL: %ld\n", sys(SYS_rt_sigaction, SIGKILL, (long)act, 0, 8));
  printf("sigaction size 4: %ld\n", sys(SYS_rt_sigaction, SIGUSR1, (long)act, 0, 4));
  printf("sigaction bad act: %ld\n", sys(SYS_rt_sigaction, SIGUSR1, 0x10, 0, 8));
  printf("sigaction bad oldact: %ld\n", sys(SYS_rt_sigaction, SIGUSR1, 0, 0x10, 8));
  printf("sigprocmask how 7: %ld\n", sys(SYS_rt_sigprocmask, 7, (long)buf, 0, 8));
  printf("sigprocmask bad set: %ld\n", sys(SYS_rt_sigprocmask, SIG_BLOCK, 0x10, 0, 8));
  stack_t ss = { .ss_sp = buf, .ss_size = 65536, .ss_flags = 77 };
  printf("sigaltstack bad flags: %ld\n", sys(SYS_sigaltstack, (long)&ss, 0, 0, 0));
  printf("sigaltstack bad ss: %ld\n", sys(SYS_sigaltstack, 0x10, 0, 0, 0));
  struct itimerval it = { .it_value = { 0, 1000000 } };
  printf("setitimer usec 1e6: %ld\n", sys(SYS_setitimer, ITIMER_REAL, (long)&it, 0, 0));
  printf("setitimer which 9: %ld\n", sys(SYS_setitimer, 9, (long)&it, 0, 0));
  printf("setitimer bad new: %ld\n", sys(SYS_setitimer, ITIMER_REAL, 0x10, 0, 0));
  printf("getitimer bad: %ld\n", sys(SYS_getitimer, ITIMER_REAL, 0x10, 0, 0));
  int id;
  printf("timer_create clock 99: %ld\n", sys(SYS_timer_create, 99, 0, (long)&id, 0));
  struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = 0 };
  printf("timer_create signo 0: %ld\n", sys(SYS_timer_create, CLOCK_MONOTONIC, (long)&sev, (long)&id, 0));
  sev.sigev_notify = 99; sev.sigev_signo = SIGUSR1;
  printf("timer_create notify 99: %ld\n", sys(SYS_timer_create, CLOCK_MONOTONIC, (long)&sev, (long)&id, 0));
  struct itimerspec spec = { .it_value = { 0, 2000000000 } };
  printf("timer_settime no timer: %ld\n", sys(SYS_timer_settime, 12345, 0, (long)&spec, 0));
  printf("timer_settime -1: %ld\n", sys(SYS_timer_settime, -1, 0, (long)&spec, 0));
  printf("timer_gettime no timer: %ld\n", sys(SYS_timer_gettime, 12345, (long)&spec, 0, 0));
  printf("timer_delete no timer: %ld\n", sys(SYS_timer_delete, 12345, 0, 0, 0));
  printf("timer_getoverrun no timer: %ld\n", sys(SYS_timer_getoverrun, 12345, 0, 0, 0));
  sev.sigev_notify = SIGEV_SIGNAL;
  if (sys(SYS_timer_create, CLOCK_MONOTONIC, (long)&sev, (long)&id, 0) == 0) {
    printf("timer_settime nsec 2e9: %ld\n", sys(SYS_timer_settime, id, 0, (long)&spec, 0));
    printf("timer_settime bad new: %ld\n", sys(SYS_timer_settime, id, 0, 0x10, 0));
    printf("timer_getoverrun: %ld\n", sys(SYS_timer_getoverrun, id, 0, 0, 0));
  }
  sigset_t set;
  sigemptyset(&set);
  struct timespec bad = { 0, -1 };
  printf("sigtimedwait bad timeout: %ld\n", sys(SYS_rt_sigtimedwait, (long)&set, 0, (long)&bad, 8));
  printf("sigtimedwait size 4: %ld\n", sys(SYS_rt_sigtimedwait, (long)&set, 0, 0, 4));
  printf("sigsuspend size 4: %ld\n", sys(SYS_rt_sigsuspend, (long)&set, 4, 0, 0));
  printf("sigpending size 4: %ld\n", sys(SYS_rt_sigpending, (long)&set, 4, 0, 0));
  printf("sigpending bad: %ld\n", sys(SYS_rt_sigpending, 0x10, 8, 0, 0));
  printf("kill sig 65: %ld\n", sys(SYS_kill, getpid(), 65, 0, 0));
  printf("kill sig 0: %ld\n", sys(SYS_kill, getpid(), 0, 0, 0));
  printf("tgkill other: %ld\n", sys(SYS_tgkill, getpid(), 999999, SIGUSR1, 0));
  printf("alarm big: %ld\n", sys(SYS_alarm, 4000000000L, 0, 0, 0));
  printf("alarm back: %d\n", sys(SYS_alarm, 0, 0, 0, 0) > 3999999000L);
  return 0;
}

static void landing(long x) {
  unsigned long flags;
  uint32_t m;
  __asm__ volatile("pushf\n pop %0\n stmxcsr %1" : "=r"(flags), "=m"(m));
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  printf("landed: x=%ld iopl=%lu usr1_blocked=%d mxcsr=%#x aligned=%d\n", x, (flags >> 12) & 3, sigismember(&now, SIGUSR1), m,
         ((uintptr_t)__builtin_frame_address(0) & 15) == 0);
  exit(0);
}

static unsigned long forge_stack[4096] __attribute__((aligned(16)));
static unsigned char forge_frame[4096] __attribute__((aligned(64)));

/* rt_sigreturn with no signal at all, on a frame built by hand: it lands where the frame says,
 * with the frame's registers and mask and a reset FPU, and only the selectors Linux allows. */
static int case_forge(void) {
  uint32_t rz = 0x7f80;
  __asm__ volatile("ldmxcsr %0" :: "m"(rz));
  ucontext_t *uc = (ucontext_t *)(forge_frame + 8);
  uc->uc_flags = getenv("STRICT") ? 4 : 0;
  greg_t *g = uc->uc_mcontext.gregs;
  g[REG_RIP] = (greg_t)(uintptr_t)landing;
  g[REG_RSP] = (greg_t)(uintptr_t)&forge_stack[4096 - 1];  /* ≡ 8 (mod 16): as after a call */
  g[REG_RDI] = 42;
  g[REG_EFL] = 0x3202;  /* IF and IOPL 3 */
  unsigned long cs = getenv("CS") ? strtoul(getenv("CS"), NULL, 0) : 0x33, ss = getenv("SS") ? strtoul(getenv("SS"), NULL, 0) : 0x2b;
  g[REG_CSGSFS] = (greg_t)(cs | (ss << 48));
  uc->uc_mcontext.fpregs = NULL;
  sigemptyset(&uc->uc_sigmask);
  sigaddset(&uc->uc_sigmask, SIGUSR1);
  printf("forging\n");
  fflush(stdout);
  __asm__ volatile("mov %0, %%rsp\n mov $15, %%eax\n syscall\n ud2" :: "r"(uc) : "memory");
  return 1;
}

static volatile int pipe_code = -1;
static void on_pipe(int sig, siginfo_t *si, void *uc) { (void)uc; hits++; pipe_code = sig == SIGPIPE ? si->si_code : -2; }

/* Writing where nobody reads: EPIPE, and SIGPIPE to the writer (not with MSG_NOSIGNAL); unhandled it kills (pipe-default). */
static int case_pipe(int fatal) {
  int fds[2], sv[2];
  if (pipe(fds) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  close(fds[0]);
  close(sv[1]);
  if (fatal) {
    printf("writing to a pipe with no reader\n");
    fflush(stdout);
    (void)!write(fds[1], "x", 1);
    printf("still here\n");
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  errno = 0;
  long r = write(fds[1], "x", 1);
  printf("ignored: write=%ld %s\n", r, strerror(errno));
  install(SIGPIPE, on_pipe, 0);
  r = write(fds[1], "x", 1);
  printf("handled: write=%ld %s hits=%d code=%d\n", r, strerror(errno), hits, pipe_code);
  struct iovec iov[2] = { { "a", 1 }, { "b", 1 } };
  r = writev(fds[1], iov, 2);
  printf("writev: %ld %s hits=%d\n", r, strerror(errno), hits);
  r = write(sv[0], "x", 1);
  printf("socket write: %ld %s hits=%d\n", r, strerror(errno), hits);
  r = send(sv[0], "x", 1, 0);
  printf("send: %ld %s hits=%d\n", r, strerror(errno), hits);
  r = send(sv[0], "x", 1, MSG_NOSIGNAL);
  printf("send MSG_NOSIGNAL: %ld %s hits=%d\n", r, strerror(errno), hits);
  struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 1 };
  r = sendmsg(sv[0], &msg, MSG_NOSIGNAL);
  printf("sendmsg MSG_NOSIGNAL: %ld %s hits=%d\n", r, strerror(errno), hits);
  r = sendmsg(sv[0], &msg, 0);
  printf("sendmsg: %ld %s hits=%d\n", r, strerror(errno), hits);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *c = argc > 1 ? argv[1] : "";
  if (!strcmp(c, "raise")) return case_raise();
  if (!strcmp(c, "nodefer")) return case_nodefer();
  if (!strcmp(c, "resethand")) return case_resethand();
  if (!strcmp(c, "mask")) return case_mask();
  if (!strcmp(c, "fpu")) return case_fpu();
  if (!strcmp(c, "segv")) return case_segv();
  if (!strcmp(c, "fixup")) return case_fixup();
  if (!strcmp(c, "traps")) return case_traps();
  if (!strcmp(c, "altstack")) return case_altstack();
  if (!strcmp(c, "alarm")) return case_alarm();
  if (!strcmp(c, "restart")) return case_restart();
  if (!strcmp(c, "timer")) return case_timer();
  if (!strcmp(c, "hostile")) return case_hostile();
  if (!strcmp(c, "blocked-fault")) return case_blocked_fault();
  if (!strcmp(c, "bad-altstack")) return case_bad_altstack();
  if (!strcmp(c, "bad-handler")) return case_bad_handler();
  if (!strcmp(c, "errors")) return case_errors();
  if (!strcmp(c, "frame")) return case_frame();
  if (!strcmp(c, "blocked-timer")) return case_blocked_timer();
  if (!strcmp(c, "forge")) return case_forge();
  if (!strcmp(c, "pipe")) return case_pipe(0);
  if (!strcmp(c, "pipe-default")) return case_pipe(1);
  fprintf(stderr, "unknown case %s\n", c);
  return 2;
}
