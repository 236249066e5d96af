import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Plugin code that crashes, exits, hangs or forks runs in the worker
/// process: the run reports a failed step naming the migration and the
/// cause, exits 1, and commits nothing of the step. Each case asserts all
/// three.
@Suite("plugin code behind the worker boundary (end to end)")
struct WorkerIsolationTests {
    /// A workspace with one good migration applied first and a hostile one
    /// after it, whose `up` inserts a document before misbehaving.
    func hostile(
        _ body: String, id: String = "002_hostile", backend: Backend = .lmdb, prelude: String = ""
    ) throws -> Workspace {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_good", up: #"return host->insert(txn, "things", "{}");"#))
        try w.add(
            "b.so",
            Fixtures.stepPlugin(
                id,
                up: """
                    if (host->insert(txn, "things", "{\\"half\\":true}") != MIGRATOR_OK) return MIGRATOR_ERROR;
                    \(body)
                    return MIGRATOR_OK;
                    """, prelude: prelude))
        return w
    }

    /// The three assertions every case makes.
    func expectFailedCleanly(_ w: Workspace, _ r: RunResult, cause: String, id: String = "002_hostile") throws {
        #expect(r.status == 1, "\(cause): exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("migration '\(id)' (b.so) failed during up"), "\(r.stderr)")
        #expect(r.stderr.contains(cause), "\(cause): \(r.stderr)")
        #expect(!r.stderr.contains("Program crashed"), "no backtrace on the operator's terminal")
        #expect(try w.count("things") == 1, "nothing of the step was committed")
        #expect(try w.count("things", #"{"half":true}"#) == 0)
        #expect(try w.states() == ["001_good": "applied", id: "failed"])
        let last = try w.history().last
        #expect(last?["outcome"] as? String == "failed" && (last?["error"] as? String)?.contains(cause) == true)
    }

    @Test(
        arguments: Backend.allCases,
        [
            ("SIGSEGV", "raise(SIGSEGV);"), ("SIGBUS", "raise(SIGBUS);"), ("SIGABRT", "raise(SIGABRT);"),
            ("SIGFPE", "raise(SIGFPE);"), ("SIGILL", "raise(SIGILL);"), ("SIGTRAP", "raise(SIGTRAP);"),
        ])
    func aRaisedSignalIsACrashNotASuccess(backend: Backend, _ c: (signal: String, code: String)) throws {
        let (signal, code) = c
        let w = try hostile(code, backend: backend)
        try expectFailedCleanly(w, try w.run(["apply"]), cause: "the worker was killed by \(signal)")
    }

    @Test(arguments: Backend.allCases, [("exit(0);", 0), ("_exit(0);", 0), ("exit(3);", 3), ("exit(5);", 5)])
    func exitFromPluginCodeIsAFailure(backend: Backend, _ c: (code: String, status: Int)) throws {
        let (code, status) = c
        let w = try hostile(code, backend: backend)
        try expectFailedCleanly(
            w, try w.run(["apply"]), cause: "exit status \(status) (exit() or _exit() in plugin code)")
    }

    @Test func abortNullDereferenceAndStackOverflow() throws {
        let cases = [
            ("abort();", "SIGABRT"),
            ("*(volatile int *)0 = 1;", "SIGSEGV"),
            (
                "volatile char big[1 << 20]; big[0] = 1; migrator_status r = up(host, txn, (void *)big); "
                    + "big[1] = (char)r; return r;", "SIGSEGV"
            ),
        ]
        for (code, signal) in cases {
            let w = try hostile(code)
            let tmp = Fixtures.temporaryDirectory("crash")
            defer { Fixtures.removeTree(tmp) }
            let r = try w.run(["apply"], environment: ["TMPDIR": tmp])
            try expectFailedCleanly(w, r, cause: "the worker was killed by \(signal)")
            // The backtrace is in a file the message names, not on the terminal.
            let files = try FileManager.default.contentsOfDirectory(atPath: tmp)
            #expect(files.count == 1 && files[0].hasPrefix("migrator-crash-"), "\(files)")
            guard let file = files.first else { continue }
            #expect(r.stderr.contains("during up (backtrace in \(tmp)/\(file))"), "\(r.stderr)")
            let report = try String(contentsOfFile: tmp + "/" + file, encoding: .utf8)
            #expect(report.contains("killed by \(signal)\nwhile: up of migration '002_hostile' (b.so)"), "\(report)")
            #expect(report.contains("backtrace (innermost first"), "\(report)")
            // The frame in the plugin is named by its file and hash.
            #expect(report.contains("= \(w.dir)/b.so (sha256 "), "\(report)")
            let mode = try FileManager.default.attributesOfItem(atPath: tmp + "/" + file)[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }
    }

    @Test func aHangingStepIsKilledAtTheStepTimeout() throws {
        let w = try hostile("sleep(30);")
        let started = Date()
        let r = try w.run(["apply", "--step-timeout", "1s"])
        try expectFailedCleanly(w, r, cause: "exceeded the step timeout (1s)")
        #expect(Date().timeIntervalSince(started) < 60)
        #expect(try w.run(["apply", "--step-timeout", "soon"]).status == 2)
    }

    /// A constructor that never returns: loading stalls, the worker is
    /// killed at the step timeout, and the file is named (exit 4), while the
    /// other plugins still load.
    @Test func aHangingConstructorIsKilledAndNamed() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_good", up: "return MIGRATOR_OK;"))
        try w.add(
            "b.so",
            Fixtures.pluginSource(
                migrations: [Fixtures.migration("002_b")],
                prelude: "#include <unistd.h>\n__attribute__((constructor)) static void hang(void) { sleep(30); }"))
        let started = Date()
        let r = try w.run(["apply", "--step-timeout", "1s"])
        #expect(r.status == 4, "\(r.stderr)")
        #expect(
            r.stderr.contains(
                "plugin '\(w.dir)/b.so': did not finish loading within 1s (a constructor or its entry function hung)"),
            "\(r.stderr)")
        #expect(!r.stderr.contains("a.so"), "the good plugin loaded: \(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 20)
        let history = try w.run(["history", "--json"], dir: false)
        #expect(history.status == 1 || !history.stdout.contains("001_good"), "nothing ran: \(history.stdout)")
    }

    /// The operator's signal reaches the step: it aborts, nothing commits,
    /// the history says interrupted, and the exit code is 128 + N.
    @Test(arguments: Backend.allCases, [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGQUIT, "SIGQUIT")])
    func operatorSignalsInterruptTheStep(backend: Backend, _ c: (signal: Int32, name: String)) throws {
        let (signal, name) = c
        // The step sleeps: it is still running when the signal arrives.
        let w = try hostile(#"fprintf(stderr, "step running\n"); fflush(stderr); sleep(30);"#, backend: backend)
        let run = try launchMigrator(["apply", "--db", w.db, "--dir", w.dir], environment: ["TMPDIR": w.root])
        var seen = run.stderr(until: "step running")
        #expect(seen.contains("step running"))
        kill(run.process.processIdentifier, signal)
        seen += String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.process.waitUntilExit()
        #expect(run.process.terminationReason == .exit && run.process.terminationStatus == 128 + signal, "\(seen)")
        #expect(seen.contains("interrupted by \(name) during up"), "\(seen)")
        // Ctrl-\ asks where the step was: the worker leaves a backtrace.
        #expect(seen.contains("during up (backtrace in \(w.root)/migrator-crash-") == (signal == SIGQUIT), "\(seen)")
        #expect(try w.count("things", #"{"half":true}"#) == 0)
        #expect(try w.history().last?["outcome"] as? String == "interrupted")
        #expect(try w.states()["002_hostile"] == "pending")
    }

    /// Plugin code that ignores the operator's signal: the worker is killed
    /// 5 s after it, the step fails as interrupted, nothing of it commits,
    /// and the exit code is 128 + N.
    @Test func aStepThatIgnoresTheSignalIsKilled() throws {
        let w = try hostile(
            """
            signal(SIGINT, SIG_IGN);
            fprintf(stderr, "step running\\n"); fflush(stderr);
            for (int i = 0; i < 300; i++) usleep(100000);
            """)
        let run = try launchMigrator(["apply", "--db", w.db, "--dir", w.dir], environment: ["TMPDIR": w.root])
        var seen = run.stderr(until: "step running")
        let started = Date()
        kill(run.process.processIdentifier, SIGINT)
        seen += String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.process.waitUntilExit()
        #expect(Date().timeIntervalSince(started) < 15, "Ctrl-C did not stop the run")
        #expect(run.process.terminationStatus == 128 + SIGINT, "\(seen)")
        #expect(seen.contains("interrupted by SIGINT during up; the step did not stop within 5s"), "\(seen)")
        #expect(try w.count("things", #"{"half":true}"#) == 0)
        #expect(try w.history().last?["outcome"] as? String == "interrupted")
        #expect(try w.states()["002_hostile"] == "pending")
    }

    /// A step that completes although the operator's signal came during it
    /// (its code ignored the signal): it stays applied, and the run stops
    /// there: the step sent ahead is cancelled, and nothing after it runs.
    @Test func aStepThatCompletesDespiteTheSignalStopsTheRun() throws {
        let w = try hostile(
            """
            signal(SIGINT, SIG_IGN);
            fprintf(stderr, "step running\\n"); fflush(stderr);
            sleep(2);
            """)
        try w.add("c.so", Fixtures.stepPlugin("003_after", up: #"return host->insert(txn, "things", "{}");"#))
        let run = try launchMigrator(["apply", "--db", w.db, "--dir", w.dir], environment: ["TMPDIR": w.root])
        var seen = run.stderr(until: "step running")
        kill(run.process.processIdentifier, SIGINT)
        seen += String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.process.waitUntilExit()
        #expect(run.process.terminationStatus == 128 + SIGINT, "\(seen)")
        #expect(seen.contains("interrupted by SIGINT after '002_hostile' was applied"), "\(seen)")
        #expect(try w.states() == ["001_good": "applied", "002_hostile": "applied", "003_after": "pending"])
        #expect(try w.count("things") == 2)
    }

    /// A plugin that forks: the sandbox refuses it (SandboxTests covers
    /// the fork guard that stands behind the sandbox).
    @Test(arguments: Backend.allCases)
    func forkInUpFailsTheStep(_ backend: Backend) throws {
        let w = try hostile(
            """
            pid_t child = fork();
            if (child == 0) {
                if (host->insert(txn, "things", "{\\"child\\":true}") == MIGRATOR_OK) _exit(42);
                return MIGRATOR_OK;
            }
            """, backend: backend)
        try expectFailedCleanly(w, try w.run(["apply"]), cause: "the sandbox refuses: clone (a new process")
        #expect(try w.count("things", #"{"child":true}"#) == 0)
    }

    /// C that writes a well-formed worker answer `{"op":"OP"}` to every
    /// pipe and socket the worker holds, then waits for the parent to read it.
    func forge(_ op: String) -> String {
        """
        const char *msg = "{\\"op\\":\\"\(op)\\"}";
        unsigned char frame[64]; size_t n = strlen(msg);
        frame[0] = (unsigned char)n; frame[1] = frame[2] = frame[3] = 0; memcpy(frame + 4, msg, n);
        for (int fd = 3; fd < 64; fd++) if (lseek(fd, 0, SEEK_CUR) < 0) (void)!write(fd, frame, n + 4);
        usleep(200000);
        """
    }

    /// Frames that break the protocol, and a reply channel closed by plugin
    /// code: the worker is killed at once (no step timeout is set here, so
    /// nothing else would end the wait), the step fails, and nothing of it
    /// commits, even though the plugin's `up` would go on to return OK.
    @Test(
        arguments: [
            (
                "an oversized frame", #"unsigned char f[4] = {0xff, 0xff, 0xff, 0xff}; (void)!write(4, f, 4);"#,
                "sent a frame of 4294967295 bytes, over the limit"
            ),
            (
                "a frame that is not JSON",
                #"unsigned char f[7] = {3, 0, 0, 0, 'a', 'b', 'c'}; (void)!write(4, f, 7);"#,
                "sent a frame of 3 bytes that is not a JSON object"
            ),
            ("the reply channel closed", "close(4);", "the worker closed its reply channel but kept running"),
        ])
    func aBrokenChannelFailsTheStepAtOnce(_ c: (what: String, code: String, cause: String)) throws {
        for after in ["sleep(30);", "sleep(1);"] {
            let w = try hostile(c.code + after)
            let started = Date()
            let r = try w.run(["apply"])
            #expect(Date().timeIntervalSince(started) < 15, "\(c.what): the run waited for the plugin")
            try expectFailedCleanly(w, r, cause: c.cause)
        }
    }

    /// Plugin code can write the worker's answers itself. An answer outside
    /// the protocol, or a "done" the record does not bear out, kills the
    /// worker and fails the step; a forged "failed" waits for the worker,
    /// and the record decides.
    @Test(arguments: Backend.allCases)
    func answersForgedByPluginCodeDoNotDecideTheOutcome(_ backend: Backend) throws {
        let bogus = try hostile(forge("bogus"), backend: backend)
        try expectFailedCleanly(bogus, try bogus.run(["apply"]), cause: "which is not part of its protocol")

        let done = try hostile(
            forge("done") + #"host->set_error(txn, "it failed after all"); return MIGRATOR_ERROR;"#, backend: backend)
        try expectFailedCleanly(
            done, try done.run(["apply"]),
            cause: "its executor reported success, but the record in _migrations disagrees")

        let failed = try hostile(forge("failed"), backend: backend)
        let r = try failed.run(["apply"])
        if backend == .postgres {
            // The forged frame also went down the worker's database
            // connection, so the step could not commit: it failed, truly.
            #expect(r.status == 1 && r.stderr.contains("without a reason"), "\(r.stderr)")
            #expect(try failed.states() == ["001_good": "applied", "002_hostile": "failed"])
            #expect(try failed.count("things", #"{"half":true}"#) == 0)
            return
        }
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("'002_hostile' committed, though its executor reported a failure"), "\(r.stderr)")
        #expect(try failed.states() == ["001_good": "applied", "002_hostile": "applied"])
        #expect(try failed.count("things", #"{"half":true}"#) == 1)
    }

    // MARK: Reading descriptors

    /// Plugins whose constructor or descriptors crash the reader are
    /// reported by file; the command itself never crashes.
    @Test func descriptorsThatCrashTheReaderAreReportedByFile() throws {
        let cases = [
            ("ctor.so", "__attribute__((constructor)) static void boom(void) { raise(SIGSEGV); }"),
            ("wild.so", "const void *wild_entry(void) { return (const void *)16; }"),
        ]
        for (file, prelude) in cases {
            let w = try Workspace()
            var source = Fixtures.pluginSource(
                migrations: [Fixtures.migration("001_a")], prelude: "#include <signal.h>\n" + prelude)
            if file == "wild.so" {
                source = source.replacingOccurrences(
                    of: "const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &bundle; }",
                    with: "const migrator_plugin_v1 *migrator_plugin_entry_v1(void) {\n"
                        + "    return bundle.abi_major ? wild_entry() : &bundle; }"
                )
            }
            try w.add(file, source)
            let apply = try w.run(["apply"])
            #expect(apply.status == 4, "\(file): \(apply.stderr)")
            #expect(
                apply.stderr.contains("plugin '\(w.dir)/\(file)': crashed while its descriptors were read"),
                "\(apply.stderr)")
            #expect(apply.stderr.contains("SIGSEGV; backtrace in "), "\(apply.stderr)")
            let list = try w.run(["list"])
            #expect(list.status == 1 && list.stderr.contains(file), "\(list.stderr)")
            #expect(try w.run(["status"]).status == 0, "status still answers")
        }
    }

    /// Host calls from another thread are refused without touching the
    /// transaction, during the step and after it; the run goes on.
    @Test(arguments: Backend.allCases)
    func threadsCannotUseTheStepsTransaction(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        let result = w.root + "/late.txt"
        try w.add(
            "a.so",
            """
            #include <pthread.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <unistd.h>
            #include "migrator_plugin.h"
            struct call { const migrator_host_v1 *h; migrator_txn *t; migrator_cursor *cur; int during, next, close; };
            static void *racer_main(void *p) {
                struct call *c = p;
                const char *doc; size_t len;
                c->during = c->h->insert(c->t, "t", "{}");
                c->next = c->h->cursor_next(c->cur, &doc, &len);
                c->close = c->h->cursor_close(c->cur);
                return NULL;
            }
            static void *late_main(void *p) {
                struct call *c = p;
                usleep(200000);
                int rc = c->h->insert(c->t, "t", "{}");
                FILE *f = fopen(getenv("MIGRATION_LATE_FILE"), "w");
                if (f) { fprintf(f, "%d", rc); fclose(f); }
                return NULL;
            }
            static migrator_status up(const migrator_host_v1 *host, migrator_txn *txn, void *u) {
                (void)u;
                struct call *c = malloc(sizeof *c);
                c->h = host; c->t = txn;
                if (host->find(txn, "t", NULL, &c->cur) != MIGRATOR_OK) return MIGRATOR_ERROR;
                pthread_t racer, late;
                pthread_create(&racer, NULL, racer_main, c);
                pthread_join(racer, NULL);
                if (c->during != MIGRATOR_INVALID || c->next != MIGRATOR_INVALID || c->close != MIGRATOR_INVALID) {
                    host->set_error(txn, "another thread got in"); return MIGRATOR_ERROR; }
                if (host->cursor_close(c->cur) != MIGRATOR_OK) {
                    host->set_error(txn, "own close refused"); return MIGRATOR_ERROR; }
                pthread_create(&late, NULL, late_main, c);
                pthread_detach(late);
                return host->insert(txn, "t", "{\\"n\\":1}");
            }
            static const migrator_migration_v1 m = { "001_threads", "Threads", "d", "1.0.0", NULL, up, NULL, NULL };
            static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "t", NULL, 1, &m };
            const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
            """)
        // Keeps the worker alive while the late thread calls.
        try w.add("b.so", Fixtures.stepPlugin("002_wait", up: "usleep(600000); return MIGRATOR_OK;"))
        let r = try w.run(["apply"], environment: ["MIGRATION_LATE_FILE": result])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.count("t") == 1, "only the step's own insert")
        let late = try String(contentsOfFile: result, encoding: .utf8)
        #expect(late == "-4", "a call after the step returned gets MIGRATOR_INVALID (-4), got \(late)")
    }

    /// The runner killed mid-step takes its worker with it: a new run that
    /// starts at once applies every migration exactly once.
    @Test(arguments: Backend.allCases)
    func killingTheRunnerKillsItsWorker(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        for i in 1...3 {
            let id = String(format: "%03d_step", i)
            try w.add(
                "p\(i).so",
                Fixtures.stepPlugin(
                    id,
                    up: """
                        host->insert(txn, "log", "{\\"id\\":\\"\(id)\\"}");
                        if (getenv("MIGRATION_SLOW_STEP") && strcmp(getenv("MIGRATION_SLOW_STEP"), "\(id)") == 0) {
                            fprintf(stderr, "in \(id)\\n"); fflush(stderr); sleep(5);
                        }
                        return MIGRATOR_OK;
                        """))
        }
        let first = try launchMigrator(
            ["apply", "--db", w.db, "--dir", w.dir], environment: ["MIGRATION_SLOW_STEP": "002_step", "TMPDIR": w.root])
        let seen = first.stderr(until: "in 002_step")
        #expect(seen.contains("in 002_step"))
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        // At once: the kernel freed the lock; the old worker must not commit 002 behind our back.
        let second = try w.run(["apply", "--lock-timeout", "10"])
        #expect(second.status == 0, "\(second.stderr)")
        usleep(300_000)
        #expect(try w.count("log") == 3, "each migration wrote once")
        for i in 1...3 { #expect(try w.count("log", #"{"id":"\#(String(format: "%03d_step", i))"}"#) == 1) }
        #expect(try w.history().filter { $0["outcome"] as? String == "applied" }.count == 3)
    }

    /// After a rollback killed mid-step, status says the migration is still
    /// applied (apply never runs a down), not that apply will retry it.
    @Test(arguments: Backend.allCases)
    func anInterruptedRollbackIsReportedAsSuch(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add(
            "a.so",
            Fixtures.stepPlugin(
                "001_a", up: "return MIGRATOR_OK;",
                down: #"fprintf(stderr, "in down\n"); fflush(stderr); sleep(5); return MIGRATOR_OK;"#))
        #expect(try w.run(["apply"]).status == 0)
        let run = try launchMigrator(
            ["rollback", "--all", "--yes", "--db", w.db, "--dir", w.dir], environment: ["TMPDIR": w.root])
        #expect(run.stderr(until: "in down").contains("in down"))
        kill(run.process.processIdentifier, SIGKILL)
        run.process.waitUntilExit()
        let status = try w.run(["status"]).stdout
        #expect(
            status.contains("rollback of 001_a interrupted") && status.contains("001_a is still applied"), "\(status)")
        #expect(try w.states()["001_a"] == "applied")
    }

    /// Descriptors that lie: a name running into an unreadable page, a count
    /// past the end of the array. The reader may crash; the command reports
    /// the file with exit 4 and never crashes itself.
    @Test func lyingDescriptorsAreReportedByFile() throws {
        let noNUL = """
            #include <string.h>
            #include <sys/mman.h>
            #include <unistd.h>
            #include "migrator_plugin.h"
            static migrator_status ok(const migrator_host_v1 *h, migrator_txn *t, void *u) {
                (void)h; (void)t; (void)u; return 0; }
            static migrator_migration_v1 m = { "001_a", "A", "d", "1.0.0", NULL, ok, ok, NULL };
            static migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "x", NULL, 1, &m };
            const migrator_plugin_v1 *migrator_plugin_entry_v1(void) {
                long page = sysconf(_SC_PAGESIZE);
                char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                memset(p, 'a', page);
                mprotect(p + page, page, PROT_NONE);
                m.name = p + page - 10;  /* no NUL before the unreadable page */
                return &b;
            }
            """
        let oversized = Fixtures.pluginSource(
            migrations: [Fixtures.migration("001_a"), Fixtures.migration("002_b")],
            bundle: "{ MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof(migrator_plugin_v1), \"x\", NULL, "
                + "100000, migrations }")
        for (file, source) in [("nonul.so", noNUL), ("oversized.so", oversized)] {
            let w = try Workspace()
            try w.add(file, source)
            let r = try w.run(["apply"])
            #expect(r.status == 4, "\(file): \(r.stderr)")
            #expect(r.stderr.contains("plugin '\(w.dir)/\(file)'"), "\(file): \(r.stderr)")
            #expect(!r.stderr.contains("Program crashed"))
            #expect(try w.run(["status"]).status == 0)
            let applied = access(w.db, F_OK) == 0 ? try w.count("_migrations") : 0
            #expect(applied == 0, "nothing applied")
        }
    }
}
