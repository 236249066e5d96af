import Foundation
import PostgresDriver

#if canImport(Glibc)
import Glibc
#endif

/// The PostgreSQL server the tests use: the one `scripts/test.sh` started
/// (its URI in `MIGRATOR_TEST_POSTGRES`), or else one this process starts
/// with Tests/Postgres/server.sh on first use and stops when it exits.
/// Tests isolate themselves by schema (``freshSchema(_:)``).
public enum PostgresServer {
    /// The connection URI of the test database, as the `migrator` superuser.
    public static let uri: String = {
        // The engine opens postgres:// locations only through its driver
        // (the CLI registers it at startup; in-process tests, here).
        PostgresStorageDriver.register()
        if let given = ProcessInfo.processInfo.environment["MIGRATOR_TEST_POSTGRES"], !given.isEmpty {
            return given
        }
        // Directly under /tmp: the server's user must reach it (as root the
        // server runs as `postgres`, and temporary directories are 0700).
        let dir = "/tmp/migrator-pg-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        let (status, output) = runScript(["start", dir])
        guard status == 0, let line = output.split(separator: "\n").last(where: { $0.hasPrefix("postgresql://") })
        else {
            return "postgresql://unavailable/?server.sh+failed:+\(output.prefix(300))"
        }
        startedDirectory = strdup(dir)
        atexit {
            guard let d = PostgresServer.startedDirectory else { return }
            _ = PostgresServer.runScript(["stop", String(cString: d)])
        }
        return String(line)
    }()

    /// Runs Tests/Postgres/server.sh with `args`.
    public static func runScript(_ args: [String]) -> (status: Int32, output: String) {
        spawn(["/bin/bash", Fixtures.packageRoot + "/Tests/Postgres/server.sh"] + args)
    }

    /// Runs a program with posix_spawn and waitpid; its output goes to a
    /// file. For anything that starts a server: Foundation's `Process`
    /// waited forever for a child whose grandchild (the daemonized server)
    /// lives on, and deadlocked inside a lazy initializer.
    public static func spawn(_ argv: [String]) -> (status: Int32, output: String) {
        let log = "/tmp/migrator-pg-log-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        defer { unlink(log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid = pid_t()
        guard let program = argv.first, posix_spawnp(&pid, program, &actions, nil, &cArgs, environ) == 0 else {
            return (-1, "cannot start \(argv.first ?? "nothing")")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), output)
    }

    /// The directory of a server this process started, for the exit handler.
    nonisolated(unsafe) static var startedDirectory: UnsafeMutablePointer<CChar>?

    /// The server's socket directory (the `host` of ``uri``).
    public static var socketDirectory: String {
        guard let r = uri.range(of: "host=") else { return "" }
        return String(uri[r.upperBound...].prefix { $0 != "&" })
    }

    /// ``uri`` as another role, with `password` if given.
    public static func uri(user: String, password: String? = nil, database: String = "migrator_test") -> String {
        let auth = password.map { "\(user):\($0)" } ?? user
        return "postgresql://\(auth)@/\(database)?host=\(socketDirectory)&port=5432"
    }

    /// A schema name no other test uses.
    public static func freshSchema(_ tag: String) -> String {
        "t_\(tag)_\(getpid())_\(UInt32.random(in: 0..<UInt32.max))"
    }
}
