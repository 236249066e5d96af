import DocumentStore
import PostgresStore

/// The backends the store, engine and end-to-end suites run on: one suite,
/// run twice. PostgreSQL is the server ``PostgresServer`` names.
public enum Backend: String, CaseIterable, CustomStringConvertible, Sendable {
    case lmdb, postgres
    public var description: String { rawValue }

    /// A fresh, empty database location (a directory, or a URI with a schema
    /// of its own), and what removes it.
    public func freshLocation(_ tag: String) -> (location: String, cleanup: () -> Void) {
        switch self {
        case .lmdb:
            let dir = Fixtures.temporaryDirectory(tag)
            return (dir + "/db", { Fixtures.removeTree(dir) })
        case .postgres:
            let schema = PostgresServer.freshSchema(tag)
            return (
                PostgresServer.uri + "&schema=" + schema,
                {
                    let c = try? Connection(uri: PostgresServer.uri)
                    _ = try? c?.run("DROP SCHEMA IF EXISTS \(schema) CASCADE")
                }
            )
        }
    }

    /// Reads the store at `location` directly, whichever backend it is.
    public func read<R>(_ location: String, _ body: (any DocumentTransaction) throws -> R) throws -> R {
        switch self {
        case .lmdb: return try DocumentStore(path: location).read { try body($0) }
        case .postgres:
            let (uri, schema) = ConnectionURI.splitSchema(location)
            return try PostgresDocumentStore(uri: uri, schema: schema ?? "migrator").read { try body($0) }
        }
    }
}
