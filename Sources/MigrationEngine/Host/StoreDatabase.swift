import DocumentStore
import MigrationKit

/// Where a running step's `log` and `progress` calls go.
public struct StepObserver: Sendable {
    /// Called with the migration id, level and text of each log line a step writes.
    public var log: @Sendable (_ migrationID: String, _ level: LogLevel, _ message: String) -> Void
    /// Called with the migration id, done and total of each progress report.
    public var progress: @Sendable (_ migrationID: String, _ done: UInt64, _ total: UInt64) -> Void
    /// An observer with both callbacks.
    public init(
        log: @escaping @Sendable (String, LogLevel, String) -> Void = { _, _, _ in },
        progress: @escaping @Sendable (String, UInt64, UInt64) -> Void = { _, _, _ in }
    ) {
        self.log = log
        self.progress = progress
    }
    /// An observer that drops everything.
    public static let silent = StepObserver()
}

/// ``Database`` directly over a store transaction of either backend: what
/// in-process Swift migrations get, and what the C host table calls into.
/// One implementation of every operation, so plugins and in-process
/// migrations, on LMDB and on PostgreSQL, behave alike.
final class StoreDatabase<Txn: SystemTransaction>: StepDatabase {
    private let txn: Txn
    private let migrationID: String
    private let observer: StepObserver
    private var cursors: [any DocumentReader] = []
    private var finished = false
    let resumeToken: String?
    /// Saves the checkpoint record and commits; nil where checkpoints are
    /// refused (trials).
    private let checkpointer: ((String) throws -> Void)?

    init(
        txn: Txn, migrationID: String, observer: StepObserver, resumeToken: String? = nil,
        checkpointer: ((String) throws -> Void)? = nil
    ) {
        self.txn = txn
        self.migrationID = migrationID
        self.observer = observer
        self.resumeToken = resumeToken
        self.checkpointer = checkpointer
    }

    func checkpoint(token: String) throws {
        guard !finished else {
            throw DatabaseError(.invalid, "migration '\(migrationID)': the database was used after its step returned")
        }
        guard let checkpointer else {
            throw DatabaseError(
                .invalid,
                "migration '\(migrationID)' checkpoints, which a dry run or a reversibility check cannot do: "
                    + "its work would be committed")
        }
        // Every open cursor closes at a checkpoint, on every backend.
        for c in cursors { c.close() }
        cursors.removeAll()
        do { try checkpointer(token) } catch let e as DatabaseError { throw e } catch {
            throw DatabaseError(.error, "migration '\(migrationID)': checkpoint failed: \(error)")
        }
    }

    /// Ends the step: closes every cursor it opened; later calls fail.
    func finish() {
        finished = true
        for c in cursors { c.close() }
        cursors.removeAll()
    }

    /// Runs a store operation, turning its error into a `DatabaseError`.
    @inline(__always)
    private func store<R>(_ body: () throws -> R) throws(DatabaseError) -> R {
        guard !finished else {
            throw DatabaseError(.invalid, "migration '\(migrationID)': the database was used after its step returned")
        }
        do { return try body() } catch { throw databaseError(error) }
    }

    // Per-document loops send the same update text, and `{"_id": …}`
    // filters, a million times: parse each distinct text once.
    private var lastFilter: (text: [UInt8], filter: Filter)?
    private var lastUpdate: (text: [UInt8], update: Update)?

    func filter(_ text: UnsafeRawBufferPointer?) throws(StoreError) -> Filter {
        guard let text, !text.isEmpty else { return .all }
        // {"_id": <int or string>}: parse just the value.
        if text.count > idFilterPrefix.count + 1, text.starts(with: idFilterPrefix),
            text[text.count - 1] == UInt8(ascii: "}")
        {
            let value = UnsafeRawBufferPointer(rebasing: text[idFilterPrefix.count..<(text.count - 1)])
            switch try? JSON(parsing: value) {
            case .int(let v)?: return .idEquals(.int(v))
            case .string(let v)?: return .idEquals(.string(v))
            default: break
            }
        }
        if let last = lastFilter, last.text.elementsEqual(text) { return last.filter }
        let f = try Filter(JSON(parsing: text))
        lastFilter = ([UInt8](text), f)
        return f
    }

    func update(_ text: UnsafeRawBufferPointer) throws(StoreError) -> Update {
        if let last = lastUpdate, last.text.elementsEqual(text) { return last.update }
        let u = try Update(JSON(parsing: text))
        lastUpdate = ([UInt8](text), u)
        return u
    }

    // MARK: Raw entry points (JSON as bytes), shared with the C host table

    @discardableResult
    func insert(
        jsonBytes: UnsafeRawBufferPointer, into collection: String, returningID: Bool
    ) throws(DatabaseError)
        -> JSON
    {
        try store {
            try txn.insert(json: jsonBytes, into: collection, returningID: returningID)
        }
    }
    func getRaw(_ collection: String, id: UnsafeRawBufferPointer) throws(DatabaseError) -> UnsafeRawBufferPointer? {
        try store { try txn.getRaw(collection, id: try JSONParser.parse(id)) }
    }
    func openCursor(_ collection: String, filter: UnsafeRawBufferPointer?) throws(DatabaseError) -> any StepCursor {
        try store {
            let c = try txn.openReader(collection, filter: try self.filter(filter))
            cursors.append(c)
            return StoreCursor(cursor: c)
        }
    }
    func updateRaw(
        _ collection: String, filter: UnsafeRawBufferPointer?, update: UnsafeRawBufferPointer
    ) throws(DatabaseError) -> UInt64 {
        try store {
            UInt64(
                try txn.updateMany(
                    collection, filter: try self.filter(filter), update: try self.update(update), upsert: false
                ).matched
            )
        }
    }
    func removeRaw(_ collection: String, filter: UnsafeRawBufferPointer?) throws(DatabaseError) -> UInt64 {
        try store { UInt64(try txn.deleteMany(collection, filter: try self.filter(filter))) }
    }
    func countRaw(_ collection: String, filter: UnsafeRawBufferPointer?) throws(DatabaseError) -> UInt64 {
        try store { UInt64(try txn.count(collection, filter: try self.filter(filter))) }
    }

    // MARK: Database

    func createCollection(_ name: String) throws {
        _ = try store { try txn.createCollection(name, ifNotExists: true) }
    }
    func dropCollection(_ name: String) throws {
        _ = try store { try txn.dropCollection(name, ifExists: false) }
    }
    func createIndex(_ collection: String, path: String, unique: Bool) throws {
        _ = try store { try txn.createIndex(collection, path: path, unique: unique) }
    }
    func dropIndex(_ collection: String, path: String) throws {
        try store { try txn.dropIndex(collection, path: path) }
    }
    func insert(json: UnsafeRawBufferPointer, into collection: String) throws {
        _ = try insert(jsonBytes: json, into: collection, returningID: false)
    }
    func insert(json: String, into collection: String) throws {
        var json = json
        _ = try json.withUTF8 { b in
            try insert(jsonBytes: UnsafeRawBufferPointer(b), into: collection, returningID: false)
        }
    }
    func find(_ collection: String, filter: String) throws -> Documents {
        var filter = filter
        let cursor = try filter.withUTF8 { b in try openCursor(collection, filter: UnsafeRawBufferPointer(b)) }
        return Documents(
            next: { [unowned self] in
                guard !self.finished else {
                    throw DatabaseError(
                        .invalid, "migration '\(self.migrationID)': the database was used after its step returned")
                }
                return try cursor.nextRaw().map { Document(bytes: [UInt8]($0)) }
            }, close: { cursor.close() },
            replace: { json in try cursor.replaceCurrent(json: json) },
            nextRaw: { [unowned self] in
                guard !self.finished else {
                    throw DatabaseError(
                        .invalid, "migration '\(self.migrationID)': the database was used after its step returned")
                }
                return try cursor.nextRaw()
            },
            delete: { try cursor.deleteCurrent() })
    }
    func update(_ collection: String, filter: String, update: String) throws -> UInt64 {
        var filter = filter
        var update = update
        return try filter.withUTF8 { f in
            try update.withUTF8 { u in
                try self.updateRaw(collection, filter: UnsafeRawBufferPointer(f), update: UnsafeRawBufferPointer(u))
            }
        }
    }
    func remove(_ collection: String, filter: String) throws -> UInt64 {
        var filter = filter
        return try filter.withUTF8 { f in try removeRaw(collection, filter: UnsafeRawBufferPointer(f)) }
    }
    func count(_ collection: String, filter: String) throws -> UInt64 {
        var filter = filter
        return try filter.withUTF8 { f in try countRaw(collection, filter: UnsafeRawBufferPointer(f)) }
    }
    func log(_ level: LogLevel, _ message: String) {
        observer.log(migrationID, level, message)
    }
    func progress(_ done: UInt64, of total: UInt64) {
        observer.progress(migrationID, done, total)
    }
}

/// A store cursor as a ``StepCursor``: its errors become `DatabaseError`s.
final class StoreCursor: StepCursor {
    let cursor: any DocumentReader
    init(cursor: any DocumentReader) { self.cursor = cursor }
    func nextRaw() throws(DatabaseError) -> UnsafeRawBufferPointer? {
        do { return try cursor.nextRaw() } catch { throw databaseError(error) }
    }
    func replaceCurrent(json: UnsafeRawBufferPointer) throws(DatabaseError) {
        do { try cursor.replaceCurrent(json: json) } catch { throw databaseError(error) }
    }
    func deleteCurrent() throws(DatabaseError) {
        do { try cursor.deleteCurrent() } catch { throw databaseError(error) }
    }
    func close() { cursor.close() }
}

/// Any error of a store operation as the `DatabaseError` plugins see.
func databaseError(_ error: any Error) -> DatabaseError {
    switch error {
    case let e as DatabaseError: return e
    case let e as StoreError: return databaseError(e)
    default: return DatabaseError(.error, "\(error)")
    }
}

/// A store error as the `DatabaseError` plugins see: the status its code
/// stands for, and its message.
func databaseError(_ e: StoreError) -> DatabaseError {
    let status: DatabaseError.Status
    switch e.code {
    case .duplicateKey, .collectionExists, .indexExists: status = .duplicateKey
    case .collectionNotFound, .indexNotFound, .documentNotFound: status = .notFound
    case .invalidJSON, .invalidDocument, .invalidFilter, .invalidUpdate, .invalidProjection, .invalidName,
        .reservedCollection, .cursorClosed, .noCurrentDocument:
        status = .invalid
    default: status = .error
    }
    return DatabaseError(status, e.message)
}

/// The start of a `{"_id": …}` filter, which the host reads without the parser.
private let idFilterPrefix = Array(#"{"_id":"#.utf8)
