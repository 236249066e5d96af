// Linux calls and constants that Swift's Glibc module does not import,
// because glibc declares them only under _GNU_SOURCE. The definitions live
// in shims.c, compiled with _GNU_SOURCE; this header includes no system
// header, so it cannot clash with the Glibc module.
#ifndef MIGRATOR_CSHIMS_H
#define MIGRATOR_CSHIMS_H

/// fcntl(2) command: test an open-file-description lock (F_OFD_GETLK).
extern const int migrator_F_OFD_GETLK;
/// fcntl(2) command: take an open-file-description lock, non-blocking (F_OFD_SETLK).
extern const int migrator_F_OFD_SETLK;
/// open(2) flag: fail with ELOOP if the last path component is a symlink.
extern const int migrator_O_NOFOLLOW;

/// memfd_create(2) with MFD_CLOEXEC | MFD_ALLOW_SEALING; -1 and errno on failure.
int migrator_memfd_create(const char *name);

/// Seals a memfd against every change (write, shrink, grow, more seals); 0, or -1 and errno.
int migrator_seal_all(int fd);

/// Whether a memfd carries every seal migrator_seal_all sets: 1, 0, or -1 and errno.
int migrator_is_sealed(int fd);

/// Sends `fd` over the Unix socket `sock` with one data byte (SCM_RIGHTS);
/// 0, or -1 and errno. The caller keeps its own copy of `fd`.
int migrator_send_fd(int sock, int fd);
/// Receives one descriptor sent by migrator_send_fd, close-on-exec; -1 and
/// errno (EBADMSG when the byte carried none) on failure.
int migrator_receive_fd(int sock);

/// renameat2(RENAME_EXCHANGE): swaps two paths atomically; 0, or -1 and errno.
int migrator_rename_exchange(const char *a, const char *b);

/// prctl(PR_SET_PDEATHSIG, sig): the kernel sends sig to this process when its parent dies.
int migrator_set_parent_death_signal(int sig);

/// Forwards SIGINT, SIGTERM, SIGQUIT and SIGHUP to the worker process while
/// a step runs in it: the step then aborts, and the caller reports the signal.
/// At any other moment such a signal has its default effect. Idempotent.
void migrator_install_signal_forwarding(void);
/// The worker the signals go to during a step (0: none).
void migrator_set_forward_target(int pid);
/// Marks whether a step is running in the worker.
void migrator_set_step_running(int running);
/// The last signal forwarded during a step (0: none), then cleared.
int migrator_take_forwarded_signal(void);
/// The last signal forwarded during a step (0: none), left as it is.
int migrator_forwarded_signal(void);
/// When that signal was forwarded: CLOCK_MONOTONIC seconds.
double migrator_forwarded_signal_time(void);

/// Sets `attr` so that a spawned process starts with no blocked signal and
/// the default action for every signal that ends a process: whatever its
/// parent inherited, a crash in plugin code must kill the worker.
/// `attr` is a posix_spawnattr_t, initialised by the caller.
int migrator_spawnattr_reset_signals(void *attr);

/// Makes every fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP,
/// SIGSYS, SIGQUIT) end the process: the handler already installed (Swift's
/// crash reporter, which returns from a raised signal) still runs first, then
/// the default action kills the process. If `report_fd` >= 0, the signal and
/// a backtrace (glibc's backtrace_symbols_fd) are first written to it, from
/// an alternate stack so that a stack overflow is reported too. Call once, early.
void migrator_make_fatal_signals_fatal(int report_fd);

/// Registers (once) a pthread_atfork child handler that marks the child.
void migrator_install_fork_guard(void);
/// Whether this process may act for a step begun by process `pid`: not a
/// forked child, and (unless the sandbox is in force) the same pid, asked of
/// the kernel, which also catches a process made by the raw clone syscall.
int migrator_may_act_for(int pid);
/// This process's pid, asked of the kernel (syscall(SYS_getpid)).
int migrator_current_pid(void);

/// Installs the worker's system-call filter (seccomp-bpf, every thread):
/// fork, vfork, clone without CLONE_THREAD, execve, execveat, ptrace,
/// process_vm_readv/writev and pidfd_getfd raise SIGSYS (fatal; the crash
/// report names the call); clone3 and the io_uring calls answer ENOSYS;
/// rt_sigaction on SIGSYS answers EPERM. 0, or -1 and errno (ENOSYS: no
/// filter for this architecture).
int migrator_install_sandbox(void);
/// Stacks a second filter: socket and socketpair of any family but AF_UNIX
/// raise SIGSYS. 0, or -1 and errno.
int migrator_sandbox_deny_network(void);
/// The name (with a short reason) of a system call the filter answers with
/// SIGSYS, by its number; NULL for any other number.
const char *migrator_refused_call_name(int nr);
/// Nonzero once migrator_install_sandbox succeeded.
int migrator_sandbox_installed(void);
/// Drops CAP_SYS_PTRACE from the bounding, effective, permitted and
/// inheritable sets (a no-op without it); 0, or -1 and errno.
int migrator_drop_ptrace_capability(void);
/// prctl(PR_SET_DUMPABLE, 0): processes of the same user without
/// CAP_SYS_PTRACE can no longer open this one's /proc/PID/mem.
int migrator_set_undumpable(void);
/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants become our children.
int migrator_become_subreaper(void);
/// Kills (SIGKILL) and reaps every child of this process and, as they die
/// and their children are reparented here (a subreaper), theirs; returns
/// how many were killed, or -1 if /proc cannot be read.
int migrator_kill_descendants(void);

/// The DT_SONAME of every shared object loaded in this process, one per line
/// (dl_iterate_phdr). The caller frees it; NULL when out of memory.
char *migrator_loaded_sonames(void);

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from birth.
int migrator_pipe_cloexec(int fds[2]);

/// Makes stdout line-buffered (setvbuf _IOLBF).
void migrator_line_buffer_stdout(void);

#endif
