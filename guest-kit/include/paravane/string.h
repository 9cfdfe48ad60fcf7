/*
 * The string and memory functions of the kit. gcc may emit calls to
 * memset, memcpy, memmove and memcmp on its own (structure copies and
 * initialisers), so lib/string.c defines them as real functions.
 */
#ifndef __PARAVANE_STRING_H__
#define __PARAVANE_STRING_H__

#include <stddef.h>

void *memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

#endif /* __PARAVANE_STRING_H__ */
