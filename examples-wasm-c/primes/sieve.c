/* Segmented sieve of Eratosthenes and the framework's text parsing; see sieve.h. */
#include "sieve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Block size of the segmented sieve: memory use does not grow with the range. */
#define SEGMENT 65536

/* floor(sqrt(n)), exact for every n <= PRIMES_MAX_LIMIT. */
static uint64_t isqrt(uint64_t n) {
    uint64_t x = (uint64_t)sqrt((double)n);
    while (x > 0 && x * x > n) {
        x--;
    }
    while ((x + 1) * (x + 1) <= n) {
        x++;
    }
    return x;
}

bool base_primes_ensure(base_primes_t *b, uint64_t hi, bool *computed) {
    *computed = false;
    if (hi < 2) {
        return true;
    }
    /* Every prime p with p * p < hi, i.e. p <= isqrt(hi - 1). */
    uint64_t need = isqrt(hi - 1);
    if (b->primes != NULL && b->covers >= need) {
        return true;
    }
    size_t n = (size_t)need + 1;
    uint8_t *composite = calloc(n, 1);
    if (composite == NULL) {
        return false;
    }
    size_t count = 0;
    /* 64-bit indices: i * i overflows wasm32's 32-bit size_t. */
    for (uint64_t i = 2; i < n; i++) {
        if (composite[i]) {
            continue;
        }
        count++;
        for (uint64_t j = i * i; j < n; j += i) {
            composite[j] = 1;
        }
    }
    uint32_t *primes = malloc((count > 0 ? count : 1) * sizeof(uint32_t));
    if (primes == NULL) {
        free(composite);
        return false;
    }
    size_t k = 0;
    for (size_t i = 2; i < n; i++) {
        if (!composite[i]) {
            primes[k++] = (uint32_t)i;
        }
    }
    free(composite);
    free(b->primes);
    b->primes = primes;
    b->count = count;
    b->covers = need;
    *computed = true;
    return true;
}

uint64_t count_primes_in(const base_primes_t *b, uint64_t lo, uint64_t hi) {
    static uint8_t seg[SEGMENT];
    uint64_t count = 0;
    if (lo < 2) {
        lo = 2;
    }
    for (uint64_t s = lo; s < hi; s += SEGMENT) {
        uint64_t e = hi - s < SEGMENT ? hi : s + SEGMENT;
        size_t n = (size_t)(e - s);
        memset(seg, 1, n);
        for (size_t i = 0; i < b->count; i++) {
            uint64_t p = b->primes[i];
            if (p * p >= e) {
                break;
            }
            uint64_t start = p * p;
            if (start < s) {
                start = (s + p - 1) / p * p;
            }
            for (uint64_t j = start; j < e; j += p) {
                seg[j - s] = 0;
            }
        }
        for (size_t k = 0; k < n; k++) {
            count += seg[k];
        }
    }
    return count;
}

bool parse_u64_words(const uint8_t *text, size_t len, uint64_t *out, size_t n) {
    size_t at = 0;
    for (size_t w = 0; w < n; w++) {
        while (at < len && text[at] == ' ') {
            at++;
        }
        if (at == len || text[at] < '0' || text[at] > '9') {
            return false;
        }
        uint64_t value = 0;
        while (at < len && text[at] >= '0' && text[at] <= '9') {
            uint64_t digit = (uint64_t)(text[at] - '0');
            if (value > (UINT64_MAX - digit) / 10) {
                return false;
            }
            value = value * 10 + digit;
            at++;
        }
        if (at < len && text[at] != ' ') {
            return false;
        }
        out[w] = value;
    }
    while (at < len && text[at] == ' ') {
        at++;
    }
    return at == len;
}

void task_range(uint64_t limit, uint64_t tasks, uint64_t index, uint64_t *lo, uint64_t *hi) {
    /* limit <= 10^12 and tasks <= 10^5, so the products fit in 64 bits. */
    *lo = limit * index / tasks;
    *hi = limit * (index + 1) / tasks;
}
