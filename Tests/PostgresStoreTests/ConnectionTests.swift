import Foundation
import PostgresStore
import TestSupport
import Testing

/// The libpq wrapper against a real (throwaway) server: statements with
/// parameters, and every bad connection is a clear, typed error that names
/// the server with its password redacted, never a hang.
@Suite("PostgreSQL connections")
struct ConnectionTests {
    func connectionError(_ uri: String) -> PostgresError? {
        do {
            _ = try Connection(uri: uri)
            return nil
        } catch {
            return error
        }
    }

    @Test("statements run with text parameters; NULL stays NULL")
    func parameters() throws {
        let c = try Connection(uri: PostgresServer.uri)
        let rows = try c.execute("SELECT $1::text || '!', $2::int + 1, $3::text IS NULL", ["it's", "41", nil])
        #expect(rows.count == 1)
        #expect(rows.text(0, 0) == "it's!")
        #expect(rows.text(0, 1) == "42")
        #expect(rows.text(0, 2) == "t")
    }

    @Test("passwords are redacted in URIs")
    func redaction() {
        #expect(ConnectionURI.redacted("postgres://u:secret@h:5432/db") == "postgres://u:***@h:5432/db")
        #expect(
            ConnectionURI.redacted("postgresql://u@h/db?password=secret&sslmode=require")
                == "postgresql://u@h/db?password=***&sslmode=require")
        #expect(ConnectionURI.redacted("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db")
        #expect(ConnectionURI.redacted("postgresql:///db?host=/tmp") == "postgresql:///db?host=/tmp")
        // What libpq reads decides, not how the URI looks: a password with
        // '?' in it, a percent-encoded key, a URI libpq cannot read.
        for (uri, secret) in [
            ("postgresql://u:pa?ss@/db?host=/tmp", "pa?ss"), ("postgresql://u@h/db?%70assword=secret", "secret"),
            ("postgresql://u@h/db?passWord=secret", "secret"), ("postgresql://u:sec%ZZret@h/db", "sec"),
            ("postgresql://u:secret@h/db?host=/x&schema=app", "secret"),
        ] {
            let shown = ConnectionURI.redacted(uri)
            #expect(!shown.contains(secret) && !shown.contains("ss@"), "\(uri) -> \(shown)")
        }
        #expect(
            ConnectionURI.redacted("postgresql://u:pa?ss@/db?host=/tmp") == "postgresql://u:***@/db?host=/tmp",
            "rebuilt from libpq's reading")
        #expect(ConnectionURI.redacted("postgresql://u:sec%ZZret@h/db").contains("cannot read; not shown"))
        #expect(ConnectionURI.isPostgres("postgres://h/db") && ConnectionURI.isPostgres("postgresql://h/db"))
        #expect(!ConnectionURI.isPostgres("./migrator.db"))
    }

    @Test("a wrong password is an authentication error that never shows the password")
    func wrongPassword() {
        let e = connectionError(PostgresServer.uri(user: "password_user", password: "not-the-password"))
        #expect(e?.code == .authenticationFailed)
        #expect(e?.message.contains("password_user:***@") == true, "\(e?.message ?? "")")
        #expect(e?.message.contains("not-the-password") == false)
        #expect(throws: Never.self) {
            _ = try Connection(uri: PostgresServer.uri(user: "password_user", password: "right-password"))
        }
    }

    @Test("libpq's own complaint about a URI it cannot read never shows the password")
    func unreadableURI() {
        let e = connectionError("postgresql://u:sec%ZZret@h/db")
        #expect(e?.code == .invalidURI, "\(e?.message ?? "")")
        #expect(e?.message.contains("sec") == false && e?.message.contains("ret") == false, "\(e?.message ?? "")")
    }

    @Test("a missing database and a refused port are connection errors naming the URI")
    func unreachable() {
        let missing = connectionError(PostgresServer.uri(user: "migrator", database: "no_such_db"))
        #expect(missing?.code == .connectionFailed)
        #expect(missing?.message.contains("no_such_db") == true, "\(missing?.message ?? "")")
        let refused = connectionError("postgresql://migrator:pw@127.0.0.1:1/x")
        #expect(refused?.code == .connectionFailed)
        #expect(refused?.message.contains("postgresql://migrator:***@127.0.0.1:1/x") == true)
        #expect(connectionError("./not-a-uri")?.code == .invalidURI)
    }

    @Test("a server that never answers times out instead of hanging")
    func timeout() {
        // A listening socket that never speaks: connect succeeds, the startup
        // packet gets no answer, so only connect_timeout ends the wait.
        let dir = Fixtures.temporaryDirectory("silent")
        defer { Fixtures.removeTree(dir) }
        let path = dir + "/.s.PGSQL.5432"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0 && listen(fd, 4) == 0)
        let start = Date()
        let e = connectionError("postgresql://migrator@/x?host=\(dir)&connect_timeout=2")
        let elapsed = Date().timeIntervalSince(start)
        #expect(e?.code == .connectionFailed, "\(e?.message ?? "connected")")
        #expect(elapsed >= 1.5 && elapsed < 10, "took \(elapsed) s")
    }

    @Test("no rights on a schema is a permission error; a killed session is a lost connection")
    func permissionsAndLostConnections() throws {
        let limited = try Connection(uri: PostgresServer.uri(user: "limited_user"))
        #expect(throws: PostgresError.self) { try limited.run("CREATE TABLE locked.t (x int)") }
        do {
            try limited.run("CREATE TABLE locked.t (x int)")
        } catch {
            #expect(error.code == .permissionDenied, "\(error.message)")
            #expect(error.sqlState == "42501")
        }

        let victim = try Connection(uri: PostgresServer.uri)
        let pid = try victim.execute("SELECT pg_backend_pid()").text(0, 0) ?? ""
        let killer = try Connection(uri: PostgresServer.uri)
        try killer.execute("SELECT pg_terminate_backend($1::int)", [pid])
        do {
            try victim.run("SELECT 1")
            Issue.record("a terminated session still answered")
        } catch {
            #expect(error.code == .connectionLost, "\(error.message)")
            #expect(error.message.contains("was lost"))
        }
        #expect(!victim.isOpen)
    }
}
