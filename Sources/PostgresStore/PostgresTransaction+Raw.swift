import DocumentStore

#if canImport(Glibc)
import Glibc
#endif

/// The per-document paths the host API uses: JSON text in, stored bytes
/// out, and a cursor that replaces or deletes the document it is on.
extension PostgresTransaction {
    public func insert(json: UnsafeRawBufferPointer, into collection: String, returningID: Bool) throws -> JSON {
        let doc: JSON
        do { doc = try JSON(parsing: json) } catch {
            throw StoreError(.invalidJSON, "collection '\(collection)': \(error.message)")
        }
        let id = try insert(doc, into: collection)
        return returningID ? id : .null
    }

    public func getRaw(_ collection: String, id: JSON) throws -> UnsafeRawBufferPointer? {
        try usableForReads(collection)
        guard let c = try self.collection(collection) else { return nil }
        let key: String
        do { key = try Self.key(id) } catch {
            throw StoreError(error.code, "collection '\(collection)': \(error.message)")
        }
        let rows = try connection.execute("SELECT body FROM \(c.table) WHERE _id = $1", [key])
        guard let bytes = rows.bytes(0, 0), rows.count == 1 else { return nil }
        return handOut(bytes)
    }

    public func openReader(_ collection: String, filter: Filter) throws -> any DocumentReader {
        try usableForReads(collection)
        // The keys present now: documents inserted later are not visited.
        var keys: [String] = []
        if let c = try self.collection(collection) {
            let rows = try connection.execute("SELECT _id FROM \(c.table) ORDER BY _id")
            keys = (0..<rows.count).compactMap { rows.text($0, 0) }
        }
        return PostgresReader(txn: self, collection: collection, filter: filter, keys: keys)
    }

    /// Replaces the document at `key` with `json`, keeping its `_id` (which
    /// `json` may omit; another one is an error) and its index entries right.
    func replace(_ collection: String, key: String, json: UnsafeRawBufferPointer) throws {
        try writable(collection)
        let id = Self.id(fromKey: key)
        let parsed: JSON
        do { parsed = try JSON(parsing: json) } catch {
            throw StoreError(error.code, "collection '\(collection)', _id \(id.serialized): \(error.message)")
        }
        guard case .object(var new) = parsed else {
            throw StoreError(
                .invalidDocument, "collection '\(collection)', _id \(id.serialized): the replacement is not an object")
        }
        if let given = new["_id"], given != id {
            throw StoreError(
                .invalidDocument,
                "collection '\(collection)': a replacement must keep _id \(id.serialized), not change it to "
                    + given.serialized)
        }
        new["_id"] = nil
        new.prepend("_id", id)
        guard let c = try self.collection(collection) else { return }
        let rows = try connection.execute("SELECT body FROM \(c.table) WHERE _id = $1", [key])
        guard let old = rows.text(0, 0) else {
            throw StoreError(.noCurrentDocument, "collection '\(collection)': the cursor's document is gone")
        }
        let body = JSON.object(new).serialized
        guard body != old else { return }
        let change = try checkedEntries(c, collection, key: key, old: try JSON(parsing: old), new: .object(new))
        try connection.execute("UPDATE \(c.table) SET body = $2 WHERE _id = $1", [key, body])
        try write(change, c, key: key)
    }

    /// Deletes the document at `key` with its index entries.
    func delete(_ collection: String, key: String) throws {
        try writable(collection)
        guard let c = try self.collection(collection) else { return }
        try connection.execute("DELETE FROM \(c.table) WHERE _id = $1", [key])
        if !c.indexes.isEmpty { try connection.execute("DELETE FROM \(c.entries) WHERE _id = $1", [key]) }
    }

    /// The body at `key` if it still exists and matches `filter`.
    func current(_ collection: String, key: String, filter: Filter) throws -> UnsafeRawBufferPointer? {
        guard let c = try self.collection(collection) else { return nil }
        let rows = try connection.execute("SELECT body FROM \(c.table) WHERE _id = $1", [key])
        guard rows.count == 1, let bytes = rows.bytes(0, 0) else { return nil }
        if !filter.matchesEverything {
            guard filter.matches(try JSON(parsing: bytes)) else { return nil }
        }
        return handOut(bytes)
    }
}

/// A cursor over the keys present when it opened; each document is read
/// when reached, so one deleted meanwhile is skipped and one changed is
/// seen as it is now, as on LMDB.
final class PostgresReader: DocumentReader {
    private let txn: PostgresTransaction
    private let collection: String
    private let filter: Filter
    private let keys: [String]
    private var next = 0
    private var currentKey: String?
    private var closed = false
    /// The bytes `nextRaw` returned, owned until the next call.
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init(txn: PostgresTransaction, collection: String, filter: Filter, keys: [String]) {
        self.txn = txn
        self.collection = collection
        self.filter = filter
        self.keys = keys
    }
    deinit { buffer.deallocate() }

    private func open() throws {
        if closed { throw StoreError(.cursorClosed, "collection '\(collection)': the cursor was closed") }
    }

    func nextRaw() throws -> UnsafeRawBufferPointer? {
        try open()
        currentKey = nil
        while next < keys.count {
            let key = keys[next]
            next += 1
            guard let bytes = try txn.current(collection, key: key, filter: filter) else { continue }
            if buffer.count < bytes.count {
                buffer.deallocate()
                buffer = .allocate(byteCount: max(bytes.count, 2 * buffer.count), alignment: 1)
            }
            buffer.copyMemory(from: bytes)
            currentKey = key
            return UnsafeRawBufferPointer(rebasing: buffer[..<bytes.count])
        }
        return nil
    }

    private func current() throws -> String {
        try open()
        guard let currentKey else {
            throw StoreError(.noCurrentDocument, "collection '\(collection)': the cursor is on no document")
        }
        return currentKey
    }

    func replaceCurrent(json: UnsafeRawBufferPointer) throws {
        try txn.replace(collection, key: try current(), json: json)
    }

    func deleteCurrent() throws {
        try txn.delete(collection, key: try current())
        currentKey = nil
    }

    func close() { closed = true }
}
