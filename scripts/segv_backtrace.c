/* LD_PRELOAD shim for GPU hosts without gdb: on SIGSEGV/SIGABRT print the native backtrace (library + offset,
 * symbol where exported) and every loaded shared object to stderr, then die with the same signal. Why: an in-process llama.cpp crash shows only
 * its Python frame through faulthandler.
 *   gcc -shared -fPIC -O1 -o /tmp/segv_backtrace.so scripts/segv_backtrace.c
 *   LD_PRELOAD=/tmp/segv_backtrace.so python3 ... */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int print_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    if (info->dlpi_name && info->dlpi_name[0]) fprintf(stderr, "  loaded %s\n", info->dlpi_name);
    return 0;
}

static void on_fault(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    void *frames[64];
    int n = backtrace(frames, 64);
    fprintf(stderr, "segv_backtrace: signal %d at address %p, %d frames\n", sig, info->si_addr, n);
    for (int i = 0; i < n; i++) {
        Dl_info d;
        if (dladdr(frames[i], &d) && d.dli_fname) {
            fprintf(stderr, "  #%d %s+0x%lx %s\n", i, d.dli_fname,
                    (unsigned long)((char *)frames[i] - (char *)d.dli_fbase), d.dli_sname ? d.dli_sname : "?");
        } else {
            fprintf(stderr, "  #%d %p\n", i, frames[i]);
        }
    }
    dl_iterate_phdr(print_object, NULL);  /* two copies of one runtime library show here */
    fflush(stderr);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
}
