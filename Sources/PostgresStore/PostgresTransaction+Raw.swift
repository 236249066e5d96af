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
        let rows = try sql("SELECT body FROM \(c.table) WHERE _id = $1", [key])
        guard let bytes = rows.bytes(0, 0), rows.count == 1 else { return nil }
        return handOut(bytes)
    }

    public func openReader(_ collection: String, filter: Filter) throws -> any DocumentReader {
        try reader(collection, filter: filter)
    }

    func reader(_ collection: String, filter: Filter) throws -> PostgresReader {
        try usableForReads(collection)
        // The last key now: documents inserted beyond it are not visited.
        guard let c = try self.collection(collection),
            let upper = try sql("SELECT max(_id) FROM \(c.table)").text(0, 0)
        else {
            return PostgresReader(txn: self, collection: collection, table: nil, filter: filter, upper: "")
        }
        return PostgresReader(txn: self, collection: collection, table: c, filter: filter, upper: upper)
    }

    /// Replaces the document at `key` with `json`, keeping its `_id` (which
    /// `json` may omit; another one is an error) and its index entries right.
    func replace(
        _ collection: String, key: String, json: UnsafeRawBufferPointer, old known: UnsafeRawBufferPointer? = nil
    ) throws {
        try writable(collection)
        let id = Self.id(fromKey: key)
        // A cursor's rewrite already in stored form, with no index to keep:
        // stored as given, without a parse (as on LMDB).
        if let known, let c = try self.collection(collection), c.indexes.isEmpty,
            CanonicalCheck.storedForm(of: json, id: id, into: &storedForm)
        {
            guard !known.sameBytes(as: storedForm) else { return }
            c.generation += 1
            notePreImage(collection, key: key, bytes: known)
            noteChange(collection) { $0.updated += 1 }
            try queueUpdate(c, collection, key: key, body: String(decoding: storedForm, as: UTF8.self))
            return
        }
        let new = try Transaction.replacement(json, id: id, collection: collection)
        guard let c = try self.collection(collection) else { return }
        if c.indexes.isEmpty, let known {
            // A cursor's rewrite: it holds the stored bytes; the write is batched.
            let body = JSON.object(new).serialized
            guard !body.utf8.elementsEqual(known) else { return }
            c.generation += 1
            notePreImage(collection, key: key, bytes: known)
            noteChange(collection) { $0.updated += 1 }
            try queueUpdate(c, collection, key: key, body: body)
            return
        }
        let rows = try sql("SELECT body FROM \(c.table) WHERE _id = $1", [key])
        guard let old = rows.text(0, 0) else {
            throw StoreError(.noCurrentDocument, "collection '\(collection)': the cursor's document is gone")
        }
        let body = JSON.object(new).serialized
        guard body != old else { return }
        notePreImage(collection, key: key, bytes: rows.bytes(0, 0))
        noteChange(collection) { $0.updated += 1 }
        let change = try checkedEntries(c, collection, key: key, old: try JSON(parsing: old), new: .object(new))
        c.generation += 1
        try sql("UPDATE \(c.table) SET body = $2 WHERE _id = $1", [key, body])
        try write(change, c, key: key)
    }

    /// Deletes the document at `key` with its index entries.
    func delete(_ collection: String, key: String) throws {
        try writable(collection)
        guard let c = try self.collection(collection) else { return }
        try notePreImage(c, collection, key: key)
        c.generation += 1
        noteChange(collection) { $0.deleted += 1 }
        try sql("DELETE FROM \(c.table) WHERE _id = $1", [key])
        if !c.indexes.isEmpty { try sql("DELETE FROM \(c.entries) WHERE _id = $1", [key]) }
    }
}

/// A cursor up to the last key present when it opened, read in batches of
/// rows in `_id` order. A write to the collection through the transaction
/// (other than this cursor's own) drops the prefetched rows, so what it
/// returns is what is stored now: a document deleted meanwhile is skipped
/// and one changed is seen as it is, as on LMDB.
final class PostgresReader: DocumentReader {
    private let txn: PostgresTransaction
    private let collection: String
    private let table: PGCollection?
    private let filter: Filter
    private let upper: String
    private var after: String?
    private var rows: Rows?
    private var index = 0
    private var seenGeneration = 0
    private var currentKey: String?
    /// The key of the document `nextRaw` returned last.
    var key: String? { currentKey }
    /// The bytes `nextRaw` returned last, in `rows`.
    private var currentBytes: UnsafeRawBufferPointer?
    private var closed = false
    private var done = false
    /// The server-side cursor, and the transaction epoch it belongs to.
    private var portal: String?
    private var portalEpoch = 0
    static let batch = 1000

    init(txn: PostgresTransaction, collection: String, table: PGCollection?, filter: Filter, upper: String) {
        self.txn = txn
        self.collection = collection
        self.table = table
        self.filter = filter
        self.upper = upper
        done = table == nil
    }

    private func open() throws {
        if closed { throw StoreError(.cursorClosed, "collection '\(collection)': the cursor was closed") }
    }

    func nextRaw() throws -> UnsafeRawBufferPointer? {
        try open()
        currentKey = nil
        currentBytes = nil
        guard let table, !done else { return nil }
        while true {
            if rows == nil || index >= (rows?.count ?? 0) || seenGeneration != table.generation {
                let fetched = try fetch(table)
                rows = fetched
                index = 0
                if fetched.count == 0 {
                    done = true
                    return nil
                }
            }
            guard let rows, let key = rows.text(index, 0), let bytes = rows.bytes(index, 1) else { return nil }
            index += 1
            after = key
            if !filter.matchesEverything {
                guard filter.matches(try JSON(parsing: bytes)) else { continue }
            }
            currentKey = key
            currentBytes = bytes
            return bytes
        }
    }

    /// The next batch, from a server-side cursor (`DECLARE`, then `FETCH`),
    /// declared again from the last key returned when the collection was
    /// written or the transaction committed (a checkpoint) since. Ordered by
    /// the primary key, it walks the index: a query per batch with `LIMIT`
    /// was planned as a sort of every remaining row, each time.
    private func fetch(_ table: PGCollection) throws -> Rows {
        if portal == nil || seenGeneration != table.generation || portalEpoch != txn.epoch {
            if let p = portal, portalEpoch == txn.epoch { try txn.sql("CLOSE \(p)") }
            let name = txn.portalName()
            var parameters: [String?] = [upper]
            var conditions = ["_id <= $1"]
            if let after {
                parameters.append(after)
                conditions.append("_id > $2")
            }
            if let narrowed = txn.candidates(table, filter, first: parameters.count + 1) {
                conditions.append(narrowed.condition)
                parameters += narrowed.parameters
            }
            seenGeneration = table.generation
            try txn.sql(
                "DECLARE \(name) NO SCROLL CURSOR FOR SELECT _id, body FROM \(table.table) WHERE "
                    + conditions.joined(separator: " AND ") + " ORDER BY _id", parameters)
            portal = name
            portalEpoch = txn.epoch
        }
        let fetched = try txn.sql("FETCH \(Self.batch) FROM \(portal ?? "")")
        // sql() may have sent pending inserts: that is no change to what we read.
        seenGeneration = table.generation
        return fetched
    }

    private func current() throws -> String {
        try open()
        guard let currentKey else {
            throw StoreError(.noCurrentDocument, "collection '\(collection)': the cursor is on no document")
        }
        return currentKey
    }

    func replaceCurrent(json: UnsafeRawBufferPointer) throws {
        // The bytes it holds are what is stored only if nothing else wrote
        // the collection since: otherwise the document is read again (it
        // may be gone, which is then an error, not a silent no-op).
        let unchanged = table.map { seenGeneration == $0.generation } ?? false
        try txn.replace(collection, key: try current(), json: json, old: unchanged ? currentBytes : nil)
        // Our own write to the document we are on: the rows ahead still hold.
        if let table { seenGeneration = table.generation }
    }

    func deleteCurrent() throws {
        try txn.delete(collection, key: try current())
        currentKey = nil
        if let table { seenGeneration = table.generation }
    }

    func close() {
        guard !closed else { return }
        closed = true
        rows = nil
        // A cursor left open would hold its memory until the transaction ends.
        if let p = portal, portalEpoch == txn.epoch, !txn.ended { _ = try? txn.sql("CLOSE \(p)") }
        portal = nil
    }
}
