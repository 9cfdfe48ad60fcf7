/*
 * A small printf: vformat() turns a format and its arguments into
 * characters for a sink; vsnprintf() and printk() are two sinks. No
 * floating point, no %n. The formats are the guest's own (trusted).
 */
#include <paravane/guest.h>

/* One conversion's flags, width and precision. */
struct spec {
    int left;   /* '-': pad on the right */
    int zero;   /* '0': pad numbers with zeros */
    int alt;    /* '#': 0x before a non-zero %x, 0X before %X */
    int width;  /* fewest characters, 0 for none */
    int prec;   /* %s: most bytes; integers: fewest digits; -1 for none */
};

struct out {
    void (*put)(void *ctx, char c);
    void *ctx;
    int count;
};

static void emit(struct out *o, char c)
{
    o->put(o->ctx, c);
    o->count++;
}

static void pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        emit(o, c);
}

static void put_string(struct out *o, const struct spec *sp, const char *s)
{
    size_t len, i;
    int fill;

    if (s == NULL)
        s = "(null)";
    len = strnlen(s, sp->prec >= 0 ? (size_t)sp->prec : (size_t)-1);
    fill = (size_t)sp->width > len ? sp->width - (int)len : 0;
    if (!sp->left)
        pad(o, ' ', fill);
    for (i = 0; i < len; i++)
        emit(o, s[i]);
    if (sp->left)
        pad(o, ' ', fill);
}

static void put_number(struct out *o, const struct spec *sp, unsigned long long v,
                       int negative, unsigned int base, int upper, const char *prefix)
{
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char digits[24];
    int nd = 0, zeros, len, fill;

    while (v != 0) {
        digits[nd++] = set[v % base];
        v /= base;
    }
    if (nd == 0 && sp->prec != 0)   /* as in C, precision 0 prints 0 as nothing */
        digits[nd++] = '0';
    zeros = sp->prec > nd ? sp->prec - nd : 0;
    len = negative + (int)strlen(prefix) + zeros + nd;
    fill = sp->width > len ? sp->width - len : 0;
    if (sp->zero && !sp->left && sp->prec < 0) {
        zeros += fill;
        fill = 0;
    }
    if (!sp->left)
        pad(o, ' ', fill);
    if (negative)
        emit(o, '-');
    while (*prefix)
        emit(o, *prefix++);
    pad(o, '0', zeros);
    while (nd > 0)
        emit(o, digits[--nd]);
    if (sp->left)
        pad(o, ' ', fill);
}

/* Length modifiers. */
enum length { LEN_HH, LEN_H, LEN_NONE, LEN_L, LEN_LL, LEN_Z };

static long long signed_arg(enum length len, va_list *ap)
{
    switch (len) {
    case LEN_HH: return (signed char)va_arg(*ap, int);
    case LEN_H:  return (short)va_arg(*ap, int);
    case LEN_L:  return va_arg(*ap, long);
    case LEN_LL: return va_arg(*ap, long long);
    case LEN_Z:  return va_arg(*ap, long);        /* ssize_t */
    default:     return va_arg(*ap, int);
    }
}

static unsigned long long unsigned_arg(enum length len, va_list *ap)
{
    switch (len) {
    case LEN_HH: return (unsigned char)va_arg(*ap, unsigned int);
    case LEN_H:  return (unsigned short)va_arg(*ap, unsigned int);
    case LEN_L:  return va_arg(*ap, unsigned long);
    case LEN_LL: return va_arg(*ap, unsigned long long);
    case LEN_Z:  return va_arg(*ap, size_t);
    default:     return va_arg(*ap, unsigned int);
    }
}

static int parse_int(const char **p)
{
    int n = 0;

    while (**p >= '0' && **p <= '9') {
        if (n < 100000)   /* widths beyond this are nonsense: stop growing */
            n = n * 10 + (**p - '0');
        (*p)++;
    }
    return n;
}

int vformat(void (*put)(void *ctx, char c), void *ctx, const char *fmt, va_list ap_in)
{
    struct out o = { put, ctx, 0 };
    va_list ap;

    va_copy(ap, ap_in);
    for (; *fmt != '\0'; fmt++) {
        struct spec sp = { 0, 0, 0, 0, -1 };
        enum length len = LEN_NONE;
        const char *start = fmt;

        if (*fmt != '%') {
            emit(&o, *fmt);
            continue;
        }
        fmt++;
        for (;; fmt++) {
            if (*fmt == '-')
                sp.left = 1;
            else if (*fmt == '0')
                sp.zero = 1;
            else if (*fmt == '#')
                sp.alt = 1;
            else
                break;
        }
        if (*fmt == '*') {
            sp.width = va_arg(ap, int);
            if (sp.width < 0) {
                sp.left = 1;
                sp.width = -sp.width;
            }
            fmt++;
        } else {
            sp.width = parse_int(&fmt);
        }
        if (*fmt == '.') {
            fmt++;
            if (*fmt == '*') {
                sp.prec = va_arg(ap, int);
                if (sp.prec < 0)
                    sp.prec = -1;
                fmt++;
            } else {
                sp.prec = parse_int(&fmt);
            }
        }
        if (*fmt == 'h') {
            len = fmt[1] == 'h' ? LEN_HH : LEN_H;
            fmt += len == LEN_HH ? 2 : 1;
        } else if (*fmt == 'l') {
            len = fmt[1] == 'l' ? LEN_LL : LEN_L;
            fmt += len == LEN_LL ? 2 : 1;
        } else if (*fmt == 'z') {
            len = LEN_Z;
            fmt++;
        }

        switch (*fmt) {
        case 'd':
        case 'i': {
            long long v = signed_arg(len, &ap);
            unsigned long long mag = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

            put_number(&o, &sp, mag, v < 0, 10, 0, "");
            break;
        }
        case 'u':
            put_number(&o, &sp, unsigned_arg(len, &ap), 0, 10, 0, "");
            break;
        case 'x':
        case 'X': {
            unsigned long long v = unsigned_arg(len, &ap);
            const char *prefix = !sp.alt || v == 0 ? "" : *fmt == 'X' ? "0X" : "0x";

            put_number(&o, &sp, v, 0, 16, *fmt == 'X', prefix);
            break;
        }
        case 'p':
            put_number(&o, &sp, (uintptr_t)va_arg(ap, void *), 0, 16, 0, "0x");
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);

            if (!sp.left)
                pad(&o, ' ', sp.width - 1);
            emit(&o, c);
            if (sp.left)
                pad(&o, ' ', sp.width - 1);
            break;
        }
        case 's':
            put_string(&o, &sp, va_arg(ap, const char *));
            break;
        case '%':
            emit(&o, '%');
            break;
        default:
            /* Unknown or truncated conversion: print it as written. */
            while (start <= fmt && *start != '\0')
                emit(&o, *start++);
            if (*fmt == '\0')
                fmt--;
            break;
        }
    }
    va_end(ap);
    return o.count;
}

/* vsnprintf's sink: a bounded buffer that counts what did not fit. */
struct bounded {
    char *buf;
    size_t size;
    size_t pos;
};

static void put_bounded(void *ctx, char c)
{
    struct bounded *b = ctx;

    if (b->pos + 1 < b->size)
        b->buf[b->pos] = c;
    b->pos++;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct bounded b = { buf, size, 0 };
    int n = vformat(put_bounded, &b, fmt, ap);

    if (size > 0)
        buf[b.pos < size ? b.pos : size - 1] = '\0';
    return n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

/* printk (and printf, the same) over each build's vprintk: lib/console.c under PV, native/platform.c natively. */
int printk(const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vprintk(fmt, ap);
    va_end(ap);
    return n;
}

/* printf is printk: the console is the only output a guest has. */
int printf(const char *fmt, ...) __attribute__((alias("printk")));
