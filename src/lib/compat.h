/*
 * compat.h - compiler attributes used across postern.
 */
#ifndef POSTERN_COMPAT_H
#define POSTERN_COMPAT_H

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN _Noreturn
#define UNUSED __attribute__((unused))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
