/// A failure of any backend's store, as a caller shows it: a stable code
/// and a message naming what is concerned. ``StoreError`` (LMDB) and
/// `PostgresError` conform, so code above the storage seam handles both
/// without knowing which backend it has.
public protocol StorageFailure: Error, Sendable {
    /// The stable code, e.g. `duplicate_key` or `connection_failed`.
    var codeName: String { get }
    /// For people; names the path, collection, document or server.
    var message: String { get }
}

/// Every failure the document store reports.
///
/// Match on ``code``: codes are stable and new ones may be added without
/// breaking callers (``Code`` is a struct, not an enum). ``message`` is for
/// people and names the path, collection or document concerned.
public struct StoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        init(_ raw: String) { rawValue = raw }
        public var description: String { rawValue }

        /// Malformed JSON text; the message gives the byte offset.
        public static let invalidJSON = Code("invalid_json")
        /// A document that is not an object, or has an unusable `_id`.
        public static let invalidDocument = Code("invalid_document")
        /// A filter that is malformed or uses an unknown operator.
        public static let invalidFilter = Code("invalid_filter")
        /// An update that is malformed or cannot apply to a document.
        public static let invalidUpdate = Code("invalid_update")
        /// A projection that mixes inclusion and exclusion, or is malformed.
        public static let invalidProjection = Code("invalid_projection")
        /// A collection name or index path that breaks the naming rules.
        public static let invalidName = Code("invalid_name")
        /// A write to a `_`-prefixed collection outside the system API.
        public static let reservedCollection = Code("reserved_collection")
        public static let collectionNotFound = Code("collection_not_found")
        public static let collectionExists = Code("collection_exists")
        public static let indexNotFound = Code("index_not_found")
        public static let indexExists = Code("index_exists")
        /// An `_id` or unique-index value that already exists.
        public static let duplicateKey = Code("duplicate_key")
        /// A write attempted inside a read transaction.
        public static let readOnlyTransaction = Code("read_only_transaction")
        /// A second write transaction begun on a thread that already has one.
        public static let nestedWriteTransaction = Code("nested_write_transaction")
        /// A cursor used after it was closed or after its transaction ended.
        public static let cursorClosed = Code("cursor_closed")
        /// A cursor operation on its current document when it has none (before
        /// the first `next`, after the last, or after the current one was deleted).
        public static let noCurrentDocument = Code("no_current_document")
        /// The document a cursor or `_id` named is gone.
        public static let documentNotFound = Code("document_not_found")
        /// A transaction used after its closure returned.
        public static let transactionEnded = Code("transaction_ended")
        /// The database reached its size limit (``DocumentStore/Options/maxMapSize``).
        public static let mapFull = Code("map_full")
        /// The file system has no room left (`ENOSPC`, `EDQUOT`).
        public static let diskFull = Code("disk_full")
        /// The path cannot be used as a database directory.
        public static let badPath = Code("bad_path")
        /// Permission denied on the database files.
        public static let permissionDenied = Code("permission_denied")
        /// The database files are damaged or not LMDB files.
        public static let corrupted = Code("corrupted")
        /// Any other LMDB failure; ``lmdbCode`` holds LMDB's code.
        public static let storage = Code("storage")
    }

    public let code: Code
    public let message: String
    /// LMDB's (or errno's) return code, when one caused this error.
    public let lmdbCode: Int32?

    public init(_ code: Code, _ message: String, lmdbCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.lmdbCode = lmdbCode
    }

    public var description: String { message }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` for closures with typed throws (the standard one is
    /// only `rethrows`).
    @inline(__always)
    func bytes<R>(_ body: (UnsafeRawBufferPointer) throws(StoreError) -> R) throws(StoreError) -> R {
        let result: Result<R, StoreError> = withUnsafeBytes { b in
            Result { () throws(StoreError) -> R in try body(b) }
        }
        return try result.get()
    }
}

extension StoreError: StorageFailure {
    public var codeName: String { code.rawValue }
}
