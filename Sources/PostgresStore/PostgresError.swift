import DocumentStore

/// A failure of the PostgreSQL backend: a stable ``code`` to match on and a
/// message that names the server (its URI with the password redacted), the
/// collection or the statement.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, stable across releases; new codes may be added.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The URI is not a PostgreSQL connection URI.
        public static let invalidURI = Code(rawValue: "invalid_uri")
        /// No connection: unreachable host, refused, timed out, missing database.
        public static let connectionFailed = Code(rawValue: "connection_failed")
        /// The server refused the credentials.
        public static let authenticationFailed = Code(rawValue: "authentication_failed")
        /// The connection broke during use (server restarted, network lost).
        public static let connectionLost = Code(rawValue: "connection_lost")
        /// The role may not do this (a schema without rights, say).
        public static let permissionDenied = Code(rawValue: "permission_denied")
        /// A statement failed for another reason.
        public static let queryFailed = Code(rawValue: "query_failed")
    }

    public let code: Code
    public let message: String
    /// The server's SQLSTATE, when it sent one.
    public let sqlState: String?

    public init(_ code: Code, _ message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }
}

extension PostgresError: StorageFailure {
    public var codeName: String { code.rawValue }
}
