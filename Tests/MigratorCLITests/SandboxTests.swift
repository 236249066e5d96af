import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The worker's sandbox (docs/security.md, "The sandbox"): every system call
/// a migration never needs is refused, the step fails naming it, and nothing
/// of it commits; what a migration does need (threads) still works; and
/// without the filter, nothing plugin code starts outlives its step.
@Suite("the worker's sandbox (end to end)")
struct SandboxTests {
    let isolation = WorkerIsolationTests()

    /// Each refused call, made from a step's `up`, kills the worker; the
    /// step fails with the call's name, and the run commits nothing of it.
    @Test(
        arguments: Backend.allCases,
        [
            ("fork() (glibc: clone without CLONE_THREAD)", "(void)fork();", "clone (a new process"),
            ("the raw clone syscall", "(void)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);", "clone (a new process"),
            ("the fork syscall", "(void)syscall(SYS_fork);", "refuses: fork (nr"),
            ("the vfork syscall", "(void)syscall(SYS_vfork);", "refuses: vfork (nr"),
            (
                "system() (it blocks SIGSYS first)", #"(void)system("true");"#,
                "with no report, most likely for a system call the sandbox refuses"
            ),
            ("execve", #"char *argv[] = {"/bin/true", NULL}; execv("/bin/true", argv);"#, "refuses: execve (nr"),
            ("ptrace", "(void)ptrace(PTRACE_ATTACH, getppid(), 0, 0);", "refuses: ptrace (nr"),
            (
                "process_vm_readv",
                """
                char buf[8]; struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
                (void)syscall(SYS_process_vm_readv, getppid(), &local, 1, &remote, 1, 0);
                """, "refuses: process_vm_readv (nr"
            ),
        ])
    func aRefusedCallFailsTheStepNamingIt(_ backend: Backend, _ c: (what: String, code: String, cause: String)) throws {
        let w = try isolation.hostile(c.code, backend: backend, prelude: Self.headers)
        let r = try w.run(["apply"])
        try isolation.expectFailedCleanly(w, r, cause: "the sandbox refuses")
        #expect(r.stderr.contains(c.cause), "\(c.what): \(r.stderr)")
    }

    /// On LMDB the worker needs no network: a network socket is refused; a
    /// Unix one still works (syslog, nscd).
    @Test func aNetworkSocketIsRefusedOnLMDB() throws {
        let w = try isolation.hostile(
            """
            int local = socket(AF_UNIX, SOCK_STREAM, 0);
            if (local < 0) { host->set_error(txn, "no Unix socket"); return MIGRATOR_ERROR; }
            close(local);
            (void)socket(AF_INET, SOCK_STREAM, 0);
            """, prelude: Self.headers)
        try isolation.expectFailedCleanly(
            w, try w.run(["apply"]), cause: "the sandbox refuses: socket (a network socket")
    }

    /// A constructor runs before any step: the network is refused to it too.
    @Test func aConstructorCannotOpenANetworkSocketOnLMDB() throws {
        let w = try Workspace()
        try w.add(
            "a.so",
            Fixtures.pluginSource(
                migrations: [Fixtures.migration("001_a")],
                prelude: """
                    #include <sys/socket.h>
                    __attribute__((constructor)) static void dial(void) { (void)socket(AF_INET, SOCK_STREAM, 0); }
                    """))
        let r = try w.run(["apply"])
        #expect(r.status == 4, "\(r.stderr)")
        #expect(r.stderr.contains("the sandbox refuses: socket (a network socket"), "\(r.stderr)")
    }

    /// What a migration may do: threads (pthread_create falls back from
    /// clone3, which answers ENOSYS, to clone with CLONE_THREAD), and a
    /// Unix socket. And what it may not take over: SIGSYS.
    @Test(arguments: Backend.allCases)
    func threadsWorkAndSIGSYSCannotBeTakenOver(_ backend: Backend) throws {
        let w = try isolation.hostile(
            """
            pthread_t t;
            if (pthread_create(&t, NULL, worker_thread, NULL) != 0 || pthread_join(t, NULL) != 0 || !thread_ran) {
                host->set_error(txn, "no thread"); return MIGRATOR_ERROR; }
            struct clone_args args; memset(&args, 0, sizeof args);
            if (syscall(SYS_clone3, &args, sizeof args) != -1 || errno != ENOSYS) {
                host->set_error(txn, "clone3 did not answer ENOSYS"); return MIGRATOR_ERROR; }
            if (signal(SIGSYS, SIG_IGN) != SIG_ERR || errno != EPERM) {
                host->set_error(txn, "SIGSYS could be ignored"); return MIGRATOR_ERROR; }
            """,
            backend: backend,
            prelude: Self.headers + """
                static int thread_ran;
                static void *worker_thread(void *arg) { (void)arg; thread_ran = 1; return NULL; }
                """)
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stderr.contains("without the sandbox"), "\(r.stderr)")
        #expect(try w.states() == ["001_good": "applied", "002_hostile": "applied"])
    }

    /// A blocked SIGSYS does not save plugin code either: the kernel
    /// delivers it with its default action, and the step fails.
    @Test func aBlockedSIGSYSStillKills() throws {
        let w = try isolation.hostile(
            """
            sigset_t set; sigemptyset(&set); sigaddset(&set, SIGSYS);
            pthread_sigmask(SIG_BLOCK, &set, NULL);
            (void)syscall(SYS_fork);
            """, prelude: Self.headers)
        try isolation.expectFailedCleanly(
            w, try w.run(["apply"]),
            cause: "killed by SIGSYS with no report, most likely for a system call the sandbox refuses")
    }

    /// Plugin code runs as the operator's user (root here), yet cannot read
    /// the parent's memory through /proc: the parent is not dumpable, and
    /// the worker has no CAP_SYS_PTRACE to override that.
    @Test func theParentsMemoryIsOutOfReach() throws {
        let w = try isolation.hostile(
            """
            char path[64]; snprintf(path, sizeof path, "/proc/%d/mem", (int)getppid());
            int fd = open(path, O_RDONLY);
            if (fd >= 0) { host->set_error(txn, "opened the parent's memory"); return MIGRATOR_ERROR; }
            """, prelude: Self.headers)
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.states()["002_hostile"] == "applied")
    }

    /// A constructor that forks is plugin code too: the sandbox is in force
    /// before the first plugin loads, and the file is named.
    @Test func aConstructorThatForksIsRefusedAtLoad() throws {
        let w = try Workspace()
        let marker = w.root + "/constructor-child-ran"
        try w.add("a.so", Self.forkingConstructor(marker: marker))
        let r = try w.run(["apply"])
        #expect(r.status == 4, "\(r.stderr)")
        #expect(
            r.stderr.contains("plugin '\(w.dir)/a.so'") && r.stderr.contains("the sandbox refuses: clone"),
            "\(r.stderr)")
        Thread.sleep(forTimeInterval: 1.5)
        #expect(access(marker, F_OK) != 0, "the constructor's child ran")
    }

    /// The worker's environment is an allowlist: nothing the operator's
    /// shell happens to hold (`LD_*` above all) reaches plugin code, while
    /// the migrations' own `MIGRATION_*` settings do; libpq's `PG*` only
    /// where the worker connects to PostgreSQL (not here, on LMDB).
    @Test func theWorkerGetsOnlyTheAllowedEnvironment() throws {
        let w = try isolation.hostile(
            """
            if (getenv("LD_LIBRARY_PATH") || getenv("SECRET_TOKEN") || getenv("PGPASSWORD")) {
                host->set_error(txn, "a variable outside the allowlist arrived"); return MIGRATOR_ERROR; }
            const char *mine = getenv("MIGRATION_SETTING");
            if (!mine || strcmp(mine, "42") != 0) {
                host->set_error(txn, "an allowed variable is missing"); return MIGRATOR_ERROR; }
            """)
        let r = try w.run(
            ["apply"],
            environment: [
                "LD_LIBRARY_PATH": w.root + "/nowhere", "SECRET_TOKEN": "abc", "MIGRATION_SETTING": "42",
                "PGPASSWORD": "secret",
            ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.states()["002_hostile"] == "applied")
    }

    /// The same refusals for an unprivileged operator (the filter needs no
    /// privilege: PR_SET_NO_NEW_PRIVS), and the parent's memory stays out
    /// of reach of a same-user worker.
    @Test(.enabled(if: getuid() == 0, "the operator is user nobody; CI runs as root"))
    func theSandboxHoldsForAnUnprivilegedUser() throws {
        let w = try isolation.hostile(
            """
            char path[64]; snprintf(path, sizeof path, "/proc/%d/mem", (int)getppid());
            if (open(path, O_RDONLY) >= 0) {
                host->set_error(txn, "opened the parent's memory"); return MIGRATOR_ERROR; }
            (void)fork();
            """, prelude: Self.headers)
        chmod(w.root, 0o755)
        chmod(w.dir, 0o755)
        #expect(mkdir(w.db, 0o700) == 0 && chown(w.db, 65534, 65534) == 0)
        let r = try Fixtures.run(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", "--", migratorBinary, "apply", "--db", w.db,
                "--dir", w.dir,
            ],
            environment: ["TMPDIR": w.db])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("the sandbox refuses: clone (a new process"), "\(r.output)")
        #expect(try w.states() == ["001_good": "applied", "002_hostile": "failed"])
    }

    // MARK: Without the filter

    static let noFilter = ["MIGRATOR_SANDBOX": "off"]

    /// The red team's attack, with the filter off: a process made by the raw
    /// clone syscall (which pthread_atfork never sees) cannot use the host
    /// (its pid is not the step's), and is killed before the step commits,
    /// so it never acts after the run.
    @Test(arguments: Backend.allCases)
    func withoutTheFilterARawCloneDiesWithItsStep(_ backend: Backend) throws {
        let w = try isolation.hostile("", backend: backend)
        let marker = w.root + "/clone-child-ran"
        try w.add(
            "c.so",
            Fixtures.stepPlugin(
                "003_clone",
                up: """
                    int p[2]; if (pipe(p) != 0) return MIGRATOR_ERROR;
                    long child = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
                    if (child == 0) {
                        char verdict = host->insert(txn, "things", "{\\"child\\":true}") == MIGRATOR_OK ? 'Y' : 'N';
                        (void)!write(p[1], &verdict, 1);
                        sleep(2);
                        int fd = open("\(marker)", O_WRONLY | O_CREAT, 0600);
                        if (fd >= 0) close(fd);
                        _exit(0);
                    }
                    if (child < 0) { host->set_error(txn, "clone failed"); return MIGRATOR_ERROR; }
                    char verdict = 0;
                    if (read(p[0], &verdict, 1) != 1 || verdict != 'N') {
                        host->set_error(txn, "the clone used the host"); return MIGRATOR_ERROR; }
                    return host->insert(txn, "things", "{\\"parent\\":true}");
                    """, prelude: Self.headers))
        let r = try w.run(["apply"], environment: Self.noFilter)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("without the sandbox's system-call filter (MIGRATOR_SANDBOX=off)"), "\(r.stderr)")
        #expect(try w.states() == ["001_good": "applied", "002_hostile": "applied", "003_clone": "applied"])
        Thread.sleep(forTimeInterval: 3)
        #expect(access(marker, F_OK) != 0, "the clone outlived its step")
        #expect(try w.count("things", #"{"child":true}"#) == 0 && w.count("things", #"{"parent":true}"#) == 1)
        #expect(try w.states()["003_clone"] == "applied", "still applied after the run")
    }

    /// With the filter off, a constructor's child is killed once loading ends.
    @Test func withoutTheFilterAConstructorsChildDiesAfterLoading() throws {
        let w = try Workspace()
        let marker = w.root + "/constructor-child-ran"
        try w.add("a.so", Self.forkingConstructor(marker: marker))
        let r = try w.run(["apply"], environment: Self.noFilter)
        #expect(r.status == 0, "\(r.stderr)")
        Thread.sleep(forTimeInterval: 3)
        #expect(access(marker, F_OK) != 0, "the constructor's child outlived loading")
    }

    /// The fork guard, with the filter off: a forked child returning into
    /// the worker cannot use the host or commit the step a second time.
    @Test(arguments: Backend.allCases)
    func withoutTheFilterAForkedChildCannotRunTheStepTwice(_ backend: Backend) throws {
        let w = try isolation.hostile(
            """
            pid_t child = fork();
            if (child == 0) {
                /* The child tries to use the host, then returns into the worker. */
                if (host->insert(txn, "things", "{\\"child\\":true}") == MIGRATOR_OK) _exit(42);
                return MIGRATOR_OK;
            }
            int status = 0;
            waitpid(child, &status, 0);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 42) {
                host->set_error(txn, "the child wrote"); return MIGRATOR_ERROR; }
            """, backend: backend)
        let r = try w.run(["apply"], environment: Self.noFilter)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.components(separatedBy: "applied 002_hostile").count == 2, "applied once: \(r.stderr)")
        #expect(try w.count("things") == 2 && w.count("things", #"{"child":true}"#) == 0)
        #expect(try w.history().map { $0["outcome"] as? String ?? "" } == ["applied", "applied"])
    }

    // MARK: Fixtures

    static let headers = """
        #include <errno.h>
        #include <fcntl.h>
        #include <pthread.h>
        #include <sys/ptrace.h>
        #include <sys/socket.h>
        #include <sys/syscall.h>
        #include <sys/uio.h>
        #include <linux/sched.h>

        """

    /// A plugin whose constructor forks a child that, two seconds later,
    /// creates `marker`.
    static func forkingConstructor(marker: String) -> String {
        Fixtures.pluginSource(
            migrations: [Fixtures.migration("001_a")],
            prelude: """
                #include <fcntl.h>
                #include <unistd.h>
                __attribute__((constructor)) static void spawn(void) {
                    if (fork() == 0) {
                        sleep(2);
                        int fd = open("\(marker)", O_WRONLY | O_CREAT, 0600);
                        if (fd >= 0) close(fd);
                        _exit(0);
                    }
                }
                """)
    }
}
