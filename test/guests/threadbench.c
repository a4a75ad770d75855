/*
 * threadbench MODE N — the thread costs bench/threads.mjs measures, then prints "done":
 *   create    N times: pthread_create a thread that returns at once, and pthread_join it
 *   pingpong  N round trips between two threads, each waking the other through a futex and waiting
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static void *nothing(void *arg) { return arg; }

static atomic_int turn; /* 0: ping's turn, 1: pong's */
static long rounds;

static void wait_turn(int mine) {
  int seen;
  while ((seen = atomic_load(&turn)) != mine) syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void give_turn(int to) {
  atomic_store(&turn, to);
  syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *pong(void *arg) {
  for (long i = 0; i < rounds; i++) { wait_turn(1); give_turn(0); }
  return arg;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "create";
  long n = argc > 2 ? atol(argv[2]) : 1000;
  if (strcmp(mode, "create") == 0) {
    for (long i = 0; i < n; i++) {
      pthread_t t;
      if (pthread_create(&t, NULL, nothing, NULL) != 0) return 1;
      pthread_join(t, NULL);
    }
  } else if (strcmp(mode, "pingpong") == 0) {
    rounds = n;
    pthread_t t;
    pthread_create(&t, NULL, pong, NULL);
    for (long i = 0; i < n; i++) { give_turn(1); wait_turn(0); }
    pthread_join(t, NULL);
  } else {
    return 2;
  }
  printf("done\n");
  return 0;
}
