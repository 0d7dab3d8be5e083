/* The executor's work and the text formats of the `primes` framework, free of any wasmos
 * binding so that it can also be compiled and checked natively (see sieve_test.c). */
#ifndef PRIMES_SIEVE_H
#define PRIMES_SIEVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest LIMIT (and task range end) accepted: its base primes (up to 10^6) take 310 KiB. */
#define PRIMES_MAX_LIMIT 1000000000000ULL

/* The primes up to `covers`, kept by an executor instance between tasks. */
typedef struct base_primes {
    uint32_t *primes;
    size_t count;
    uint64_t covers;
} base_primes_t;

/* Makes `b` hold every prime p with p * p < hi (hi <= PRIMES_MAX_LIMIT). Sets `*computed` to
 * whether it had to sieve (false when an earlier, larger call already covers hi). Returns false
 * when out of memory, leaving `b` as it was. */
bool base_primes_ensure(base_primes_t *b, uint64_t hi, bool *computed);

/* Counts the primes p with lo <= p < hi by a segmented sieve of Eratosthenes in fixed 64 KiB
 * blocks; `b` must cover hi (base_primes_ensure). */
uint64_t count_primes_in(const base_primes_t *b, uint64_t lo, uint64_t hi);

/* Parses exactly `n` unsigned decimal numbers separated by ASCII spaces (leading and trailing
 * spaces allowed). Returns false on anything else: no digits, a sign, overflow, extra words. */
bool parse_u64_words(const uint8_t *text, size_t len, uint64_t *out, size_t n);

/* The range of task `index` when [0, limit) is split into `tasks` near-equal ranges. */
void task_range(uint64_t limit, uint64_t tasks, uint64_t index, uint64_t *lo, uint64_t *hi);

#endif
