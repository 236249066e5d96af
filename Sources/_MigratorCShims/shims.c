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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <errno.h>
#include <execinfo.h>
#include <stdint.h>
#include <unistd.h>
#include <time.h>
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
static volatile double forwarded_at;

static void forward(int sig) {
    if (step_running && forward_pid > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
        forwarded_at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
int migrator_forwarded_signal(void) { return forwarded_signal; }
double migrator_forwarded_signal_time(void) { return forwarded_at; }
int migrator_take_forwarded_signal(void) {
    int sig = forwarded_signal;
    forwarded_signal = 0;
    return sig;
}

static volatile sig_atomic_t forked_child;
static void mark_child(void) { forked_child = 1; }
/* Set once the sandbox is in force: no other process can then exist. */
static volatile sig_atomic_t sandboxed;

void migrator_install_fork_guard(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, migrator_install_fork_guard_once);
}

int migrator_may_act_for(int pid) {
    if (forked_child) return 0;
    /* A process made by the raw clone syscall never runs pthread_atfork
       handlers; only its pid, asked of the kernel (no cached value), tells. */
    return sandboxed || (int)syscall(SYS_getpid) == pid;
}

int migrator_current_pid(void) { return (int)syscall(SYS_getpid); }

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

static const char *refused_call_name(int nr);

static void write_crash_report(int sig, siginfo_t *info) {
    /* SYS_SECCOMP (1): the sandbox's filter refused a system call. */
    if (sig == SIGSYS && info->si_code == 1) {
        report_text("refused system call ");
        report_text(refused_call_name(info->si_syscall));
        report_text(" (nr ");
        report_number((uintptr_t)(unsigned)info->si_syscall, 10);
        report_text(")\n");
    }
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
    sigemptyset(&sa.sa_mask);
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        /* The sandbox refuses rt_sigaction on SIGSYS, so the handler cannot
           restore the default itself: the kernel does, on delivery. */
        if (signals[i] == SIGSYS) sa.sa_flags |= SA_RESETHAND;
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

/* ---- Containment of plugin code in the worker ---------------------------
   The filter below refuses what a migration never needs: new processes
   (threads excepted), running programs, reading or writing other processes,
   and (on LMDB, where the worker needs no network) network sockets. A
   refused call raises SIGSYS, which kills the worker after its crash report
   names the call (the parent names it again from its own table). Plugin code cannot take SIGSYS over: rt_sigaction on it is
   refused, and the kernel delivers a blocked or ignored SIGSYS with its
   default action (death) anyway. */

#if defined(__x86_64__)
#define MIGRATOR_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define MIGRATOR_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

static const struct {
    int nr;
    const char *name;
} refused_calls[] = {
#ifdef __NR_fork
    {__NR_fork, "fork"},
#endif
#ifdef __NR_vfork
    {__NR_vfork, "vfork"},
#endif
    {__NR_clone, "clone (a new process; only threads are allowed)"},
    {__NR_execve, "execve"},
    {__NR_execveat, "execveat"},
    {__NR_ptrace, "ptrace"},
    {__NR_process_vm_readv, "process_vm_readv"},
    {__NR_process_vm_writev, "process_vm_writev"},
#ifdef __NR_pidfd_getfd
    {__NR_pidfd_getfd, "pidfd_getfd"},
#endif
    {__NR_socket, "socket (a network socket; the worker needs none on LMDB)"},
    {__NR_socketpair, "socketpair (a network socket)"},
};

const char *migrator_refused_call_name(int nr) {
    for (unsigned i = 0; i < sizeof refused_calls / sizeof refused_calls[0]; i++)
        if (refused_calls[i].nr == nr) return refused_calls[i].name;
    return NULL;
}

static const char *refused_call_name(int nr) {
    const char *name = migrator_refused_call_name(nr);
    return name != NULL ? name : "?";
}

struct program {
    struct sock_filter code[96];
    unsigned short length;
};

static void emit(struct program *p, struct sock_filter f) {
    if (p->length < sizeof p->code / sizeof p->code[0]) p->code[p->length] = f;
    p->length++;
}

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
/* The low 32 bits of argument i (flags, families and signal numbers are ints). */
#define LOAD_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))
#define RETURN(v) BPF_STMT(BPF_RET | BPF_K, (v))

/* `nr` -> action. */
static void refuse(struct program *p, int nr, unsigned action) {
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
    emit(p, (struct sock_filter)RETURN(action));
}

/* `nr` whose argument `arg` (compared with `value` by `op`: BPF_JEQ, or
   BPF_JSET for any of the bits) is *not* matched -> action. */
static void refuse_unless(struct program *p, int nr, int arg, unsigned op, unsigned value, unsigned action) {
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4));
    emit(p, (struct sock_filter)LOAD_ARG(arg));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | op | BPF_K, value, 1, 0));
    emit(p, (struct sock_filter)RETURN(action));
    emit(p, (struct sock_filter)LOAD_NR);
}

/* `nr` whose argument `arg` equals `value` -> action. */
static void refuse_when(struct program *p, int nr, int arg, unsigned value, unsigned action) {
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4));
    emit(p, (struct sock_filter)LOAD_ARG(arg));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, value, 0, 1));
    emit(p, (struct sock_filter)RETURN(action));
    emit(p, (struct sock_filter)LOAD_NR);
}

static int install(struct program *p) {
    if (p->length > sizeof p->code / sizeof p->code[0]) {
        errno = E2BIG;
        return -1;
    }
    struct sock_fprog prog = {.len = p->length, .filter = p->code};
    /* TSYNC: every thread of the worker, not just this one. */
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
    if (rc > 0) errno = EBUSY; /* a thread could not be synchronised */
    return rc == 0 ? 0 : -1;
}

static unsigned errno_action(int e) { return SECCOMP_RET_ERRNO | ((unsigned)e & SECCOMP_RET_DATA); }

int migrator_install_sandbox(void) {
#ifndef MIGRATOR_AUDIT_ARCH
    errno = ENOSYS;
    return -1;
#else
    struct program p = {.length = 0};
    emit(&p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MIGRATOR_AUDIT_ARCH, 1, 0));
    emit(&p, (struct sock_filter)RETURN(SECCOMP_RET_KILL_PROCESS));
    emit(&p, (struct sock_filter)LOAD_NR);
#ifdef __x86_64__
    /* The x32 ABI's numbers would bypass every rule below. */
    emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
    emit(&p, (struct sock_filter)RETURN(errno_action(ENOSYS)));
#endif
#ifdef __NR_fork
    refuse(&p, __NR_fork, SECCOMP_RET_TRAP);
#endif
#ifdef __NR_vfork
    refuse(&p, __NR_vfork, SECCOMP_RET_TRAP);
#endif
    refuse(&p, __NR_execve, SECCOMP_RET_TRAP);
    refuse(&p, __NR_execveat, SECCOMP_RET_TRAP);
    refuse(&p, __NR_ptrace, SECCOMP_RET_TRAP);
    refuse(&p, __NR_process_vm_readv, SECCOMP_RET_TRAP);
    refuse(&p, __NR_process_vm_writev, SECCOMP_RET_TRAP);
#ifdef __NR_pidfd_getfd
    refuse(&p, __NR_pidfd_getfd, SECCOMP_RET_TRAP);
#endif
    /* clone3 passes its flags in memory, which a filter cannot read: it
       answers ENOSYS, and glibc then makes its threads with clone. */
#ifdef __NR_clone3
    refuse(&p, __NR_clone3, errno_action(ENOSYS));
#endif
    /* io_uring performs calls that no filter sees. */
#ifdef __NR_io_uring_setup
    refuse(&p, __NR_io_uring_setup, errno_action(ENOSYS));
    refuse(&p, __NR_io_uring_enter, errno_action(ENOSYS));
    refuse(&p, __NR_io_uring_register, errno_action(ENOSYS));
#endif
    refuse_unless(&p, __NR_clone, 0, BPF_JSET, CLONE_THREAD, SECCOMP_RET_TRAP);
    refuse_when(&p, __NR_rt_sigaction, 0, SIGSYS, errno_action(EPERM));
    emit(&p, (struct sock_filter)RETURN(SECCOMP_RET_ALLOW));
    /* Without it, an unprivileged process may not install a filter; it also
       keeps a set-user-id program from gaining anything (exec is refused anyway). */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) != 0) return -1;
    if (install(&p) != 0) return -1;
    sandboxed = 1;
    return 0;
#endif
}

int migrator_sandbox_deny_network(void) {
#ifndef MIGRATOR_AUDIT_ARCH
    errno = ENOSYS;
    return -1;
#else
    /* A second filter, stacked on the first (the kernel applies both). */
    struct program p = {.length = 0};
    emit(&p, (struct sock_filter)LOAD_NR);
    refuse_unless(&p, __NR_socket, 0, BPF_JEQ, AF_UNIX, SECCOMP_RET_TRAP);
    refuse_unless(&p, __NR_socketpair, 0, BPF_JEQ, AF_UNIX, SECCOMP_RET_TRAP);
    emit(&p, (struct sock_filter)RETURN(SECCOMP_RET_ALLOW));
    return install(&p);
#endif
}

int migrator_sandbox_installed(void) { return sandboxed; }

int migrator_drop_ptrace_capability(void) {
    /* Root keeps CAP_SYS_PTRACE otherwise, which opens /proc/PID/mem of any
       process, the parent's included. */
    if (prctl(PR_CAPBSET_READ, CAP_SYS_PTRACE, 0UL, 0UL, 0UL) == 1 &&
        prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0UL, 0UL, 0UL) != 0 && errno != EPERM)
        return -1;
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    unsigned bit = 1u << (CAP_SYS_PTRACE % 32);
    unsigned index = CAP_SYS_PTRACE / 32;
    if (!((data[index].effective | data[index].permitted | data[index].inheritable) & bit)) return 0;
    data[index].effective &= ~bit;
    data[index].permitted &= ~bit;
    data[index].inheritable &= ~bit;
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -1;
}

int migrator_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL); }

/* Reads a small /proc file into `text` (NUL-terminated); its length, or -1. */
static ssize_t read_proc(const char *path, char *text, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t len = read(fd, text, size - 1);
    close(fd);
    if (len >= 0) text[len] = 0;
    return len;
}

/* This process's children: from /proc/self/task/TID/children (one small
   file per thread; Linux 3.5 with CONFIG_PROC_CHILDREN, as Debian builds
   it), else by the ppid of every process in /proc (the field after the
   command's closing parenthesis). At most `capacity`; the count, or -1. */
static int children(pid_t me, pid_t *out, int capacity) {
    int n = 0;
    char path[64], text[4096];
    DIR *tasks = opendir("/proc/self/task");
    if (tasks != NULL) {
        int listed = 0;
        struct dirent *t;
        while ((t = readdir(tasks)) != NULL && n < capacity) {
            if (t->d_name[0] < '1' || t->d_name[0] > '9') continue;
            snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
            ssize_t len = read_proc(path, text, sizeof text);
            if (len < 0) continue;
            listed = 1;
            for (char *p = text, *end; n < capacity; p = end) {
                long pid = strtol(p, &end, 10);
                if (end == p) break;
                out[n++] = (pid_t)pid;
            }
        }
        closedir(tasks);
        if (listed) return n;
    }
    DIR *proc = opendir("/proc");
    if (proc == NULL) return -1;
    struct dirent *e;
    while ((e = readdir(proc)) != NULL && n < capacity) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if (read_proc(path, text, sizeof text) <= 0) continue;
        char *close_paren = strrchr(text, ')');
        int ppid = 0;
        char state;
        if (close_paren == NULL || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) continue;
        if (ppid == me) out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(proc);
    return n;
}

int migrator_kill_descendants(void) {
    pid_t me = getpid();
    int killed = 0;
    /* A subreaper inherits its descendants as their parents die: each round
       kills the children, whose own children then become ours. Bounded, so
       that a fork bomb cannot hold the worker here forever. */
    for (int round = 0; round < 256; round++) {
        pid_t found[256];
        int n = children(me, found, 256);
        if (n < 0) return round == 0 ? -1 : killed;
        if (n == 0) break;
        for (int i = 0; i < n; i++) kill(found[i], SIGKILL);
        for (int i = 0; i < n; i++) {
            int status;
            /* __WALL: a child made by raw clone may send no SIGCHLD. */
            while (waitpid(found[i], &status, __WALL) < 0 && errno == EINTR) {}
        }
        killed += n;
    }
    return killed;
}

int migrator_set_undumpable(void) { return prctl(PR_SET_DUMPABLE, 0UL, 0UL, 0UL, 0UL); }
