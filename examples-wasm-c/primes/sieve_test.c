/* Native checks of sieve.c, run by examples-wasm-c/build.sh before the component is built:
 *   cc -O2 -o /tmp/sieve_test sieve.c sieve_test.c -lm && /tmp/sieve_test
 * Prints "sieve_test: N passed, 0 failed" and exits 0, or names each failed check and exits 1. */
#include <stdio.h>
#include <string.h>

#include "sieve.h"

static int passed, failed;

#define CHECK(cond)                                                   \
    do {                                                              \
        if (cond) {                                                   \
            passed++;                                                 \
        } else {                                                      \
            failed++;                                                 \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                             \
    } while (0)

static bool is_prime_naive(uint64_t n) {
    if (n < 2) {
        return false;
    }
    for (uint64_t d = 2; d * d <= n; d++) {
        if (n % d == 0) {
            return false;
        }
    }
    return true;
}

static uint64_t count(base_primes_t *b, uint64_t lo, uint64_t hi) {
    bool computed;
    if (!base_primes_ensure(b, hi, &computed)) {
        return UINT64_MAX;
    }
    return count_primes_in(b, lo, hi);
}

static bool parse(const char *s, uint64_t *out, size_t n) {
    return parse_u64_words((const uint8_t *)s, strlen(s), out, n);
}

int main(void) {
    base_primes_t b = {0};

    /* Every small range against trial division, including ranges crossing block boundaries. */
    uint64_t ranges[][2] = {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {2, 3}, {0, 100}, {90, 97}, {90, 98},
                            {65530, 65550}, {131000, 200000}, {999000, 1001000}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        uint64_t want = 0;
        for (uint64_t n = ranges[r][0]; n < ranges[r][1]; n++) {
            want += is_prime_naive(n);
        }
        CHECK(count(&b, ranges[r][0], ranges[r][1]) == want);
    }

    /* Known values of pi(x), the number of primes below x. */
    base_primes_t fresh = {0};
    CHECK(count(&fresh, 0, 1000000) == 78498);
    CHECK(count(&fresh, 0, 10000000) == 664579);

    /* The base primes are reused when they already cover a range and grown when they do not. */
    base_primes_t reuse = {0};
    bool computed;
    CHECK(base_primes_ensure(&reuse, 1000000, &computed) && computed);
    CHECK(base_primes_ensure(&reuse, 500000, &computed) && !computed);
    CHECK(base_primes_ensure(&reuse, 1000000, &computed) && !computed);
    CHECK(base_primes_ensure(&reuse, 1000002, &computed) && computed);

    /* Splitting [0, limit) into tasks covers it exactly, and the counts add up. */
    uint64_t total = 0, prev_hi = 0;
    for (uint64_t i = 0; i < 7; i++) {
        uint64_t lo, hi;
        task_range(1000000, 7, i, &lo, &hi);
        CHECK(lo == prev_hi);
        prev_hi = hi;
        total += count(&b, lo, hi);
    }
    CHECK(prev_hi == 1000000);
    CHECK(total == 78498);
    uint64_t lo, hi;
    task_range(PRIMES_MAX_LIMIT, 100000, 99999, &lo, &hi);
    CHECK(hi == PRIMES_MAX_LIMIT && lo == PRIMES_MAX_LIMIT - 10000000);

    /* Parsing. */
    uint64_t w[3];
    CHECK(parse("10 20", w, 2) && w[0] == 10 && w[1] == 20);
    CHECK(parse("  0   18446744073709551615 ", w, 2) && w[0] == 0 && w[1] == UINT64_MAX);
    CHECK(parse("5 0 7", w, 3) && w[2] == 7);
    CHECK(!parse("18446744073709551616 1", w, 2));
    CHECK(!parse("10", w, 2));
    CHECK(!parse("10 20 30", w, 2));
    CHECK(!parse("10 -20", w, 2));
    CHECK(!parse("10 2x", w, 2));
    CHECK(!parse("10\t20", w, 2));
    CHECK(!parse("", w, 1));

    printf("sieve_test: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
