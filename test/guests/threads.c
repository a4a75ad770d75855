/* Threads as C programs use them: pthread_create/join, a barrier of 64 threads, mutexes and
 * condition variables, thread-local storage, a spinning thread that needs another to run (time
 * slices), sleeps in threads, a pipe and poll between threads, detached threads and the clear-and-wake at exit; with argument
 * `cancel`, pthread_cancel too. `mainexit`: main() calls pthread_exit and a thread finishes later;
 * `deadlock`: main joins a thread that waits forever.
 * Everything printed is the same however the threads interleave. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <poll.h>

#define N 64

static pthread_barrier_t barrier;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long total;
static int arrived;
static __thread int mine = 7;
static atomic_int flag;
static atomic_int tids_distinct;

static void *worker(void *arg) {
  long i = (long)arg;
  mine = (int)i;                     /* TLS: every thread its own */
  pthread_barrier_wait(&barrier);    /* all 64 alive at once */
  pthread_mutex_lock(&lock);
  total += i;
  arrived++;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  sched_yield();
  if (mine != (int)i) return (void *)-1L;
  if (syscall(SYS_gettid) != getpid()) atomic_fetch_add(&tids_distinct, 1);
  return (void *)(i * i);
}

static void *spinner(void *arg) {
  (void)arg;
  while (!atomic_load(&flag)) { } /* needs the main thread to run: only a time slice lets it */
  return (void *)42L;
}

static void *sleeper(void *arg) {
  struct timespec ts = { 0, 20 * 1000 * 1000 };
  nanosleep(&ts, NULL);
  return arg;
}

static void *cancelled(void *arg) {
  (void)arg;
  for (;;) { pause(); }   /* a cancellation point */
  return NULL;
}

static atomic_int detached_done;
static void *detached(void *arg) {
  (void)arg;
  atomic_store(&detached_done, 1);
  return NULL;
}

static void *late_worker(void *arg) {
  struct timespec ts = { 0, 20 * 1000 * 1000 };
  nanosleep(&ts, NULL);
  printf("worker %ld outlived main\n", (long)arg);
  return NULL;
}

static void *forever(void *arg) {
  pthread_mutex_lock(&lock);
  for (;;) pthread_cond_wait(&cond, &lock);
  return arg;
}

static int pipe_fds[2], back_fds[2];

/* Reads the pipe until end of file, checking the bytes; writes the count back through another pipe. */
static void *consumer(void *arg) {
  (void)arg;
  unsigned char buf[4096];
  long count = 0, bad = 0;
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; i++) bad += buf[i] != (unsigned char)((count + i) * 7);
    count += n;
  }
  char line[64];
  int len = snprintf(line, sizeof line, "%ld bytes, %ld wrong", count, bad);
  write(back_fds[1], line, len);
  close(back_fds[1]);
  return NULL;
}

static void pipe_between_threads(void) {
  pipe(pipe_fds);
  pipe(back_fds);
  pthread_t c;
  pthread_create(&c, NULL, consumer, NULL);
  /* poll waits for the consumer's answer while the consumer waits for bytes: both must park */
  static unsigned char data[300000];
  for (long i = 0; i < (long)sizeof data; i++) data[i] = (unsigned char)(i * 7);
  for (long off = 0; off < (long)sizeof data;) {
    ssize_t n = write(pipe_fds[1], data + off, sizeof data - off);
    if (n <= 0) { printf("write failed\n"); return; }
    off += n;
  }
  close(pipe_fds[1]);
  struct pollfd pfd = { back_fds[0], POLLIN, 0 };
  int ready = poll(&pfd, 1, 5000);
  char line[64] = { 0 };
  read(back_fds[0], line, sizeof line - 1);
  pthread_join(c, NULL);
  printf("pipe between threads: poll %d, %s\n", ready, line);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "mainexit") == 0) { /* the process lives on until its last thread ends */
    pthread_t w;
    pthread_create(&w, NULL, late_worker, (void *)1L);
    printf("main exits first\n");
    fflush(stdout);
    pthread_exit(NULL);
  }
  if (argc > 1 && strcmp(argv[1], "deadlock") == 0) { /* natively a hang; in tskvm a guest fault */
    pthread_t w;
    pthread_create(&w, NULL, forever, NULL);
    pthread_join(w, NULL);
    return 0;
  }
  pthread_t t[N];
  pthread_barrier_init(&barrier, NULL, N);
  for (long i = 0; i < N; i++) {
    if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) { printf("create %ld failed\n", i); return 1; }
  }
  pthread_mutex_lock(&lock);
  while (arrived < N) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  long squares = 0;
  for (int i = 0; i < N; i++) {
    void *r;
    pthread_join(t[i], &r);
    squares += (long)r;
  }
  printf("64 threads: sum %ld, sum of squares %ld, distinct tids %d, main tls %d\n", total, squares, atomic_load(&tids_distinct), mine);

  pthread_t s;
  pthread_create(&s, NULL, spinner, NULL);
  struct timespec ts = { 0, 10 * 1000 * 1000 };
  nanosleep(&ts, NULL);
  atomic_store(&flag, 1);
  void *r;
  pthread_join(s, &r);
  printf("spinner returned %ld\n", (long)r);

  pthread_t z[4];
  for (long i = 0; i < 4; i++) pthread_create(&z[i], NULL, sleeper, (void *)(i + 100));
  long zs = 0;
  for (int i = 0; i < 4; i++) { pthread_join(z[i], &r); zs += (long)r; }
  printf("sleepers returned %ld\n", zs);

  if (argc > 1 && strcmp(argv[1], "cancel") == 0) { /* glibc cancels with a signal (SIGCANCEL) */
    pthread_t c;
    pthread_create(&c, NULL, cancelled, NULL);
    nanosleep(&ts, NULL);
    pthread_cancel(c);
    pthread_join(c, &r);
    printf("cancelled: %s\n", r == PTHREAD_CANCELED ? "yes" : "no");
  }

  pipe_between_threads();

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t d;
  pthread_create(&d, &attr, detached, NULL);
  while (!atomic_load(&detached_done)) sched_yield();
  printf("detached thread ran\n");
  return 0;
}
