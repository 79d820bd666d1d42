/*
 * Test-only shim: lets Bun's musl build run on a Debian host for the musl test.
 *
 * The musl runtime links libstdc++.so.6 and libgcc_s.so.1, which only Alpine-like systems ship
 * built for musl. Debian ships them built for glibc; musl's loader can load those once these few
 * glibc-only symbols exist. Everything else (prctl, setrlimit, mlockall, ...) still comes from
 * musl itself, which is what the test is about. Built with: gcc -shared -fPIC -nostdlib.
 */
#include <stddef.h>
#include <stdint.h>
typedef struct __locale_struct *locale_t;
extern size_t strftime_l(char *, size_t, const char *, const void *, locale_t);
extern long getrandom(void *, size_t, unsigned);
uint32_t arc4random(void) { uint32_t v = 0; getrandom(&v, sizeof v, 0); return v; }
size_t __strftime_l(char *s, size_t n, const char *f, const void *tm, locale_t l) { return strftime_l(s, n, f, tm, l); }
/* Thread-local destructors are not run: harmless for a short test process. */
int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso) { (void)dtor; (void)obj; (void)dso; return 0; }
char __libc_single_threaded = 0;
/* -1 makes libgcc's unwinder fall back to dl_iterate_phdr, which musl has. */
int _dl_find_object(void *pc, void *result) { (void)pc; (void)result; return -1; }
struct { unsigned vendor, type, subtype, features[1]; } __cpu_model;
int __cpu_indicator_init(void) { return 0; }
