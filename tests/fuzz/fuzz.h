/*
 * What the fuzz targets share: a check that crashes (so libFuzzer saves the input) with a
 * line saying which property broke, and a copy of the input into exactly-sized memory,
 * so that ASan catches a read one byte past what a function was given.
 */
#ifndef BOTGATE_FUZZ_H
#define BOTGATE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* n bytes in a fresh allocation of exactly n bytes (1 when n is 0, never read). */
static inline char *
fuzz_copy(const uint8_t *data, size_t n)
{
    char *p = malloc(n > 0 ? n : 1);
    FUZZ_CHECK(p != NULL);
    if (n > 0)
        memcpy(p, data, n);
    return p;
}

/* n bytes as a C string: cut at the first NUL, terminated. Free with free(). */
static inline char *
fuzz_cstr(const uint8_t *data, size_t n)
{
    const uint8_t *nul = memchr(data, '\0', n);
    size_t len = nul != NULL ? (size_t)(nul - data) : n;
    char *p = malloc(len + 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data, len);
    p[len] = '\0';
    return p;
}

/* Splits [data, data + n) at the first '\n': the part before it, and after it (or none). */
static inline void
fuzz_split(const uint8_t *data, size_t n, size_t *first_len, const uint8_t **rest, size_t *rest_len)
{
    const uint8_t *nl = memchr(data, '\n', n);
    *first_len = nl != NULL ? (size_t)(nl - data) : n;
    *rest = nl != NULL ? nl + 1 : data + n;
    *rest_len = nl != NULL ? n - *first_len - 1 : 0;
}

/* The reason a function wrote: terminated inside its buffer. */
static inline int
fuzz_err_ok(const char *err, size_t errlen)
{
    return memchr(err, '\0', errlen) != NULL;
}

#endif
