/*
 * hide_avx512.so: make a process see an AVX2-only x86-64 CPU on a machine that has AVX-512.
 *
 * Loaded with LD_PRELOAD (see benchmarks/avx2_emulation/run.py). Two things a library can ask:
 *
 * 1. The CPUID instruction. The constructor turns on Linux's CPUID faulting
 *    (arch_prctl(ARCH_SET_CPUID, 0); needs the "cpuid_fault" CPU flag): from then on, CPUID in
 *    this thread and every thread it creates raises SIGSEGV. The handler runs the real CPUID
 *    with faulting briefly off, clears the AVX-512, AVX-VNNI and AMX bits of leaf 7, and steps
 *    over the instruction. oneDNN (PyTorch's convolutions), ATen's kernel dispatch, ONNX
 *    Runtime's MLAS and NNPACK all decide their kernels this way.
 * 2. /proc/cpuinfo. open/openat/fopen of that file return a copy whose "flags" lines lack the
 *    same features (what dualsr's CPU detection reads).
 *
 * What it does not change: the cores themselves (their clock, caches and the width of their
 * execution units), and what the dynamic loader decided before the constructor ran (glibc's
 * string functions: run.py also sets GLIBC_TUNABLES for those). Numbers measured this way are
 * an emulation and are labelled so.
 *
 * Build: cc -O2 -shared -fPIC -o hide_avx512.so hide_avx512.c -ldl
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

/* Leaf 7 sub-leaf 0 bits that an AVX2-only CPU lacks. */
#define L7_EBX_HIDE ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | \
                     (1u << 28) | (1u << 30) | (1u << 31))          /* AVX512 F DQ IFMA PF ER CD BW VL */
#define L7_ECX_HIDE ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14)) /* VBMI VBMI2 VNNI BITALG VPOPCNTDQ */
#define L7_EDX_HIDE ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | \
                     (1u << 24) | (1u << 25))                     /* 4VNNIW 4FMAPS VP2INTERSECT AMX-BF16 FP16 AMX-TILE AMX-INT8 */
/* Leaf 7 sub-leaf 1 EAX: AVX-VNNI, AVX512_BF16, AMX-FP16; EDX: AVX10. */
#define L71_EAX_HIDE ((1u << 4) | (1u << 5) | (1u << 21))
#define L71_EDX_HIDE (1u << 19)

static struct sigaction chained;     /* a SIGSEGV handler the program asked for, called for real faults */
static int chained_set;

static long set_faulting(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        r[1] &= ~L7_EBX_HIDE;
        r[2] &= ~L7_ECX_HIDE;
        r[3] &= ~L7_EDX_HIDE;
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~L71_EAX_HIDE;
        r[3] &= ~L71_EDX_HIDE;
    }
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = (ucontext_t *)ctx;
    const unsigned char *ip = (const unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
    if (ip && ip[0] == 0x0F && ip[1] == 0xA2) { /* CPUID */
        uint32_t leaf = (uint32_t)uc->uc_mcontext.gregs[REG_RAX];
        uint32_t sub = (uint32_t)uc->uc_mcontext.gregs[REG_RCX];
        uint32_t r[4];
        set_faulting(0);
        real_cpuid(leaf, sub, r);
        set_faulting(1);
        mask(leaf, sub, r);
        uc->uc_mcontext.gregs[REG_RAX] = r[0];
        uc->uc_mcontext.gregs[REG_RBX] = r[1];
        uc->uc_mcontext.gregs[REG_RCX] = r[2];
        uc->uc_mcontext.gregs[REG_RDX] = r[3];
        uc->uc_mcontext.gregs[REG_RIP] += 2;
        return;
    }
    /* A real fault: the program's own handler if it set one, else the default action. */
    if (chained_set && (chained.sa_flags & SA_SIGINFO) && chained.sa_sigaction) {
        chained.sa_sigaction(sig, info, ctx);
        return;
    }
    if (chained_set && chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
        chained.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    int (*real_sigaction)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
    real_sigaction(SIGSEGV, &dfl, NULL); /* returning re-runs the instruction, which now kills the process */
}

static int install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    int (*real_sigaction)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
    return real_sigaction(SIGSEGV, &sa, NULL);
}

__attribute__((constructor)) static void hide_avx512_init(void) {
    if (install() != 0 || set_faulting(1) != 0) {
        fprintf(stderr, "hide_avx512: CPUID faulting is not available here (needs Linux and the "
                        "cpuid_fault CPU flag); the process would see the real CPU, so it stops\n");
        _exit(3);
    }
}

/* Keep our SIGSEGV handler first: a program's own is remembered and called for real faults. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static int (*real)(int, const struct sigaction *, struct sigaction *);
    if (!real) real = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV) return real(sig, act, old);
    if (old) {
        if (chained_set) *old = chained;
        else memset(old, 0, sizeof *old);
    }
    if (act) {
        chained = *act;
        chained_set = 1;
    }
    return 0;
}

/* signal() does not go through sigaction's PLT entry inside glibc, so it needs its own wrapper
 * (gcc's cc1 installs its crash handler this way; without this, its first CPUID killed it). */
typedef void (*handler_t)(int);
static handler_t chain_plain(int sig, handler_t fn, handler_t (*real)(int, handler_t)) {
    if (sig != SIGSEGV) return real(sig, fn);
    handler_t before = chained_set && !(chained.sa_flags & SA_SIGINFO) ? chained.sa_handler : SIG_DFL;
    memset(&chained, 0, sizeof chained);
    chained.sa_handler = fn;
    chained_set = 1;
    return before;
}
#define SIGNAL_WRAPPER(name)                                                 \
    handler_t name(int sig, handler_t fn) {                                  \
        static handler_t (*real)(int, handler_t);                            \
        if (!real) real = dlsym(RTLD_NEXT, #name);                           \
        return chain_plain(sig, fn, real);                                   \
    }
SIGNAL_WRAPPER(signal)
SIGNAL_WRAPPER(bsd_signal)
SIGNAL_WRAPPER(sysv_signal)

/* ---- /proc/cpuinfo without the hidden flags ---- */

static int is_cpuinfo(const char *path) { return path && strcmp(path, "/proc/cpuinfo") == 0; }

static int hidden_flag(const char *tok, size_t n) {
    static const char *prefixes[] = {"avx512", "amx", "avx_vnni", "avx10", NULL};
    for (int i = 0; prefixes[i]; i++) {
        size_t k = strlen(prefixes[i]);
        if (n >= k && strncmp(tok, prefixes[i], k) == 0) return 1;
    }
    return 0;
}

static int filtered_cpuinfo(void) {
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    int src = real_open("/proc/cpuinfo", O_RDONLY);
    if (src < 0) return src;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while (buf && (got = read(src, buf + len, cap - len)) > 0) {
        len += (size_t)got;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    close(src);
    if (!buf) return -1;
    int out = memfd_create("cpuinfo", 0);
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && buf[end] != '\n') end++;
        int flags_line = (end - i > 5) && (strncmp(buf + i, "flags", 5) == 0);
        if (!flags_line) {
            write(out, buf + i, end - i);
        } else {
            size_t colon = i;
            while (colon < end && buf[colon] != ':') colon++;
            write(out, buf + i, colon - i + 1);
            size_t t = colon + 1;
            while (t < end) {
                while (t < end && buf[t] == ' ') t++;
                size_t s = t;
                while (t < end && buf[t] != ' ') t++;
                if (t > s && !hidden_flag(buf + s, t - s)) {
                    write(out, " ", 1);
                    write(out, buf + s, t - s);
                }
            }
        }
        if (end < len) write(out, "\n", 1);
        i = end + 1;
    }
    free(buf);
    lseek(out, 0, SEEK_SET);
    return out;
}

#define OPEN_WRAPPER(name)                                                   \
    int name(const char *path, int flags, ...) {                             \
        static int (*real)(const char *, int, ...);                          \
        if (!real) real = dlsym(RTLD_NEXT, #name);                           \
        if (is_cpuinfo(path)) return filtered_cpuinfo();                     \
        va_list ap;                                                          \
        va_start(ap, flags);                                                 \
        int mode = va_arg(ap, int);                                          \
        va_end(ap);                                                          \
        return real(path, flags, mode);                                      \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                 \
    int name(int dir, const char *path, int flags, ...) {                    \
        static int (*real)(int, const char *, int, ...);                     \
        if (!real) real = dlsym(RTLD_NEXT, #name);                           \
        if (is_cpuinfo(path)) return filtered_cpuinfo();                     \
        va_list ap;                                                          \
        va_start(ap, flags);                                                 \
        int mode = va_arg(ap, int);                                          \
        va_end(ap);                                                          \
        return real(dir, path, flags, mode);                                 \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

#define FOPEN_WRAPPER(name)                                                  \
    FILE *name(const char *path, const char *how) {                          \
        static FILE *(*real)(const char *, const char *);                    \
        if (!real) real = dlsym(RTLD_NEXT, #name);                           \
        if (is_cpuinfo(path)) {                                              \
            int fd = filtered_cpuinfo();                                     \
            return fd < 0 ? NULL : fdopen(fd, "r");                          \
        }                                                                    \
        return real(path, how);                                              \
    }
FOPEN_WRAPPER(fopen)
FOPEN_WRAPPER(fopen64)
