#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <stdio.h>
#include <signal.h>
#include <pthread.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <errno.h>
#include <execinfo.h>
#include <stdint.h>
#include <unistd.h>
#include "migrator_cshims.h"

const int migrator_F_OFD_GETLK = F_OFD_GETLK;
const int migrator_F_OFD_SETLK = F_OFD_SETLK;
const int migrator_O_NOFOLLOW = O_NOFOLLOW;

int migrator_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); }

int migrator_seal_all(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

int migrator_is_sealed(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return -1;
    int all = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    return (seals & all) == all;
}

int migrator_send_fd(int sock, int fd) {
    char byte = 'F';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = sizeof control.space};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do n = sendmsg(sock, &msg, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

int migrator_receive_fd(int sock) {
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = sizeof control.space};
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
    if (n != 1) {
        if (n == 0) errno = EPIPE;
        return -1;
    }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)) || (msg.msg_flags & MSG_CTRUNC)) {
        errno = EBADMSG;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

int migrator_rename_exchange(const char *a, const char *b) {
    return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

int migrator_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0UL, 0UL, 0UL); }

static void mark_child(void);
static void migrator_install_fork_guard_once(void) { pthread_atfork(NULL, NULL, mark_child); }

static volatile sig_atomic_t forward_pid;
static volatile sig_atomic_t step_running;
static volatile sig_atomic_t forwarded_signal;

static void forward(int sig) {
    if (step_running && forward_pid > 0) {
        forwarded_signal = sig;
        kill((pid_t)forward_pid, sig);
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void migrator_install_signal_forwarding(void) {
    static int installed;
    if (installed) return;
    installed = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    int signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP};
    sigset_t unblock;
    sigemptyset(&unblock);
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        sigaction(signals[i], &sa, NULL);
        sigaddset(&unblock, signals[i]);
    }
    /* A parent process may have left them blocked; forwarding needs them. */
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
}

void migrator_set_forward_target(int pid) { forward_pid = pid; }
void migrator_set_step_running(int running) { step_running = running; }
int migrator_take_forwarded_signal(void) {
    int sig = forwarded_signal;
    forwarded_signal = 0;
    return sig;
}

static volatile sig_atomic_t forked_child;
static void mark_child(void) { forked_child = 1; }

void migrator_install_fork_guard(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, migrator_install_fork_guard_once);
}

int migrator_in_forked_child(void) { return forked_child; }

int migrator_spawnattr_reset_signals(void *attr) {
    posix_spawnattr_t *a = attr;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigfillset(&defaults);
    if (posix_spawnattr_setsigmask(a, &none) != 0) return -1;
    if (posix_spawnattr_setsigdefault(a, &defaults) != 0) return -1;
    return posix_spawnattr_setflags(a, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

static struct sigaction previous_fatal[65];
static int crash_report_fd = -1;

/* Async-signal-safe output: no stdio, no malloc. */
static void report_text(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(crash_report_fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void report_number(uintptr_t v, unsigned base) {
    char buf[32];
    int i = (int)sizeof buf - 1;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && i > 0);
    report_text(buf + i);
}

static void write_crash_report(int sig, siginfo_t *info) {
    report_text("signal ");
    report_number((uintptr_t)sig, 10);
    report_text(" (");
    report_text(sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    report_text("), si_code ");
    report_number((uintptr_t)(unsigned)info->si_code, 10);
    if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE) {
        report_text(", address 0x");
        report_number((uintptr_t)info->si_addr, 16);
    }
    report_text("\nbacktrace (innermost first; /proc/self/fd/N is a plugin, named below):\n");
    void *frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, crash_report_fd);
}

static void die_after_report(int sig, siginfo_t *info, void *context) {
    if (crash_report_fd >= 0) {
        write_crash_report(sig, info);
        crash_report_fd = -1; /* once: a crash inside the report must not recurse */
    }
    struct sigaction *p = &previous_fatal[sig];
    if (p->sa_flags & SA_SIGINFO) {
        if (p->sa_sigaction) p->sa_sigaction(sig, info, context);
    } else if (p->sa_handler != SIG_DFL && p->sa_handler != SIG_IGN) {
        p->sa_handler(sig);
    }
    /* Whatever the reporter did, this signal ends the process: delivered with
       the default action as soon as this handler returns. */
    signal(sig, SIG_DFL);
    raise(sig);
}

void migrator_make_fatal_signals_fatal(int report_fd) {
    if (report_fd >= 0) {
        /* backtrace() loads libgcc_s on first use: do it now, not in a handler. */
        void *warm[1];
        (void)backtrace(warm, 1);
        /* A stack overflow leaves no stack for the handler: give it its own. */
        static char alternate[128 * 1024];
        stack_t ss = {.ss_sp = alternate, .ss_size = sizeof alternate, .ss_flags = 0};
        sigaltstack(&ss, NULL);
        crash_report_fd = report_fd;
    }
    int signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS, SIGQUIT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = die_after_report;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        sigaction(signals[i], &sa, &previous_fatal[signals[i]]);
    }
}

struct soname_list {
    char *text;
    size_t length, capacity;
    int failed;
};

static int add_soname(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct soname_list *list = data;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (dyn == NULL) return 0;
    ElfW(Addr) strtab = 0;
    ElfW(Xword) soname = 0;
    int has_soname = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_STRTAB) strtab = dyn->d_un.d_ptr;
        if (dyn->d_tag == DT_SONAME) { soname = dyn->d_un.d_val; has_soname = 1; }
    }
    if (strtab == 0 || !has_soname) return 0;
    // glibc relocates DT_STRTAB in place, except in a read-only dynamic
    // section (the vDSO's): an address below the load base is still relative.
    if (strtab < info->dlpi_addr) strtab += info->dlpi_addr;
    const char *name = (const char *)(strtab + soname);
    size_t n = strlen(name);
    if (list->length + n + 2 > list->capacity) {
        size_t capacity = (list->capacity + n + 2) * 2;
        char *grown = realloc(list->text, capacity);
        if (grown == NULL) { list->failed = 1; return 1; }
        list->text = grown;
        list->capacity = capacity;
    }
    memcpy(list->text + list->length, name, n);
    list->length += n;
    list->text[list->length++] = '\n';
    list->text[list->length] = 0;
    return 0;
}

char *migrator_loaded_sonames(void) {
    struct soname_list list = {0};
    dl_iterate_phdr(add_soname, &list);
    if (list.failed) { free(list.text); return NULL; }
    return list.text != NULL ? list.text : strdup("");
}

int migrator_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

void migrator_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
