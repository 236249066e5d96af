import CLibPQ

#if canImport(Glibc)
import Glibc
#endif

/// One connection to a PostgreSQL server: a thin owner of libpq's `PGconn`.
///
/// Statements take text parameters (`$1`, `$2`, …), never spliced-in
/// values. Every error names the server by its URI with the password
/// redacted. A connection is used by one thread at a time.
public final class Connection {
    private let conn: OpaquePointer
    /// The URI with any password redacted, for messages.
    public let name: String

    /// The default for `connect_timeout` when the URI does not set one: a
    /// server that does not answer is an error, never a hang.
    public static let defaultConnectTimeout = 10

    /// Connects to `uri` (any libpq connection URI).
    /// - Throws: ``PostgresError`` `.invalidURI`, `.connectionFailed`
    ///   (unreachable, refused, timed out, no such database) or
    ///   `.authenticationFailed`.
    public init(uri: String, connectTimeout: Int = Connection.defaultConnectTimeout) throws(PostgresError) {
        name = ConnectionURI.redacted(uri)
        guard ConnectionURI.isPostgres(uri) else {
            throw PostgresError(.invalidURI, "'\(name)' is not a PostgreSQL URI (postgres://USER@HOST:PORT/DBNAME)")
        }
        // libpq's own complaint quotes the URI, which may hold the password.
        let parsed = ConnectionURI.parse(uri)
        guard parsed.options != nil else {
            throw PostgresError(.invalidURI, "\(name): \(parsed.problem)")
        }
        // connect_timeout first: a value in the URI itself comes later and wins.
        let keywords = ["connect_timeout", "application_name", "dbname"]
        let values = ["\(connectTimeout)", "migrator", uri]
        // Each list ends with NULL, as libpq wants.
        let made: OpaquePointer? = withCStrings(keywords + [nil]) { k in
            withCStrings(values + [nil]) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let made else { throw PostgresError(.connectionFailed, "\(name): out of memory connecting") }
        guard PQstatus(made) == CONNECTION_OK else {
            let text = ConnectionURI.scrubbing(Self.trimmed(PQerrorMessage(made)), of: uri)
            PQfinish(made)
            let auth = text.contains("authentication failed") || text.contains("no password supplied")
            throw PostgresError(
                auth ? .authenticationFailed : .connectionFailed, "cannot connect to \(name): \(text)")
        }
        conn = made
        // Notices ("already exists, skipping") are not errors: keep them off stderr.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
    }

    deinit { PQfinish(conn) }

    /// Whether the connection is still usable.
    public var isOpen: Bool { PQstatus(conn) == CONNECTION_OK }

    /// Runs one statement with text parameters (nil is SQL NULL).
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> Rows {
        let result: OpaquePointer? = withCStrings(parameters) { p in
            PQexecParams(conn, sql, Int32(parameters.count), nil, p, nil, nil, 0)
        }
        return try check(result, sql)
    }

    /// Runs statements without parameters (several may be separated by `;`).
    public func run(_ sql: String) throws(PostgresError) {
        try check(PQexec(conn, sql), sql)
    }

    /// Runs `COPY … FROM STDIN` (text format), sending `data`: rows of
    /// tab-separated fields, each ending in a newline, escaped by
    /// ``appendCopyField(_:to:)``. The fastest way in for many rows.
    public func copyIn(_ sql: String, _ data: [UInt8]) throws(PostgresError) {
        let start = PQexec(conn, sql)
        if let start, PQresultStatus(start) == PGRES_COPY_IN {
            PQclear(start)
        } else {
            _ = try check(start, sql)  // throws for a failure
            throw PostgresError(.queryFailed, "\(name): the statement did not start a copy")
        }
        let sent = data.withUnsafeBufferPointer { b in
            b.baseAddress.map { base in
                base.withMemoryRebound(to: CChar.self, capacity: b.count) { PQputCopyData(conn, $0, Int32(b.count)) }
            } ?? 1
        }
        // On a failed send, end the copy with an error so the server stops waiting.
        _ = PQputCopyEnd(conn, sent == 1 ? nil : "sending the rows failed")
        var last: OpaquePointer? = PQgetResult(conn)
        while let r = last, let next = PQgetResult(conn) {
            PQclear(r)
            last = next
        }
        try check(last, sql)
    }

    /// Appends `text` as one field of a `COPY` text-format row: backslash,
    /// tab, newline and carriage return escaped.
    public static func appendCopyField(_ text: String, to out: inout [UInt8]) {
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 9: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 10: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 13: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            default: out.append(b)
            }
        }
    }

    @discardableResult
    private func check(_ result: OpaquePointer?, _ sql: String) throws(PostgresError) -> Rows {
        guard let result else {
            throw PostgresError(
                isOpen ? .queryFailed : .connectionLost, "\(name): \(Self.trimmed(PQerrorMessage(conn)))")
        }
        let status = PQresultStatus(result)
        if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK { return Rows(result) }
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        let text = Self.trimmed(PQresultErrorMessage(result))
        PQclear(result)
        let code: PostgresError.Code
        if !isOpen || state?.hasPrefix("08") == true || state?.hasPrefix("57P") == true {
            code = .connectionLost
        } else if state == "42501" {
            code = .permissionDenied
        } else {
            code = .queryFailed
        }
        let what = code == .connectionLost ? "the connection to \(name) was lost" : name
        throw PostgresError(code, "\(what): \(text)", sqlState: state)
    }

    static func trimmed(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "" }
        var s = String(cString: p)
        while s.last == "\n" || s.last == " " { s.removeLast() }
        // The server's severity prefix says nothing our message does not.
        for prefix in ["ERROR:  ", "FATAL:  "] where s.hasPrefix(prefix) { s.removeFirst(prefix.count) }
        return s.split(separator: "\n").joined(separator: "; ")
    }
}

/// The rows of a result, owned: values are read in place until it goes.
public final class Rows {
    private let result: OpaquePointer
    init(_ result: OpaquePointer) { self.result = result }
    deinit { PQclear(result) }

    /// The number of rows.
    public var count: Int { Int(PQntuples(result)) }
    /// The rows a command changed (`UPDATE`, `DELETE`, `INSERT`).
    public var affected: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }
    /// A value as text, or nil for SQL NULL.
    public func text(_ row: Int, _ column: Int) -> String? {
        guard PQgetisnull(result, Int32(row), Int32(column)) == 0 else { return nil }
        return String(cString: PQgetvalue(result, Int32(row), Int32(column)))
    }
    /// A value's bytes in place, valid while this object lives; nil for NULL.
    public func bytes(_ row: Int, _ column: Int) -> UnsafeRawBufferPointer? {
        guard PQgetisnull(result, Int32(row), Int32(column)) == 0, let p = PQgetvalue(result, Int32(row), Int32(column))
        else { return nil }
        return UnsafeRawBufferPointer(start: p, count: Int(PQgetlength(result, Int32(row), Int32(column))))
    }
}

/// Calls `body` with C copies of `strings` (nil stays NULL), freed after.
private func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies: [UnsafePointer<CChar>?] = strings.map { s in s.flatMap { strdup($0) }.map { UnsafePointer($0) } }
    defer { for c in copies { free(UnsafeMutablePointer(mutating: c)) } }
    return body(copies)
}
