/* The C baseline for bench/storage.bench.ts: a plain memcpy loop of `chunk` bytes into a
 * pre-touched destination of `span` bytes, sequential with wrap, for `seconds` seconds.
 * Prints one JSON line {"bytesPerSecond": ..., "copies": ...}. Built and run by the bench itself,
 * so the baseline is measured on the same machine in the same run as the volume. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  size_t chunk = argc > 1 ? strtoull(argv[1], NULL, 10) : (1u << 20);
  size_t span = argc > 2 ? strtoull(argv[2], NULL, 10) : (256u << 20);
  double seconds = argc > 3 ? atof(argv[3]) : 2.0;
  if (chunk == 0 || span < chunk) return 2;
  uint8_t* source = malloc(chunk);
  uint8_t* target = malloc(span);
  if (!source || !target) return 3;
  for (size_t i = 0; i < chunk; i++) source[i] = (uint8_t)(i * 131 + 7);
  memset(target, 1, span); /* first touch happens here, outside the timed loop */
  size_t slots = span / chunk, copies = 0;
  double start = now_seconds(), elapsed = 0;
  do {
    for (int k = 0; k < 64; k++) {
      memcpy(target + (copies % slots) * chunk, source, chunk);
      copies++;
    }
    /* Keep the compiler from proving the copies dead. */
    __asm__ __volatile__("" : : "r"(target) : "memory");
    elapsed = now_seconds() - start;
  } while (elapsed < seconds);
  printf("{\"bytesPerSecond\": %.0f, \"copies\": %zu}\n", (double)copies * (double)chunk / elapsed,
         copies);
  free(source);
  free(target);
  return 0;
}
