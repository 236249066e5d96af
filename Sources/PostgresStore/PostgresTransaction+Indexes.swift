import DocumentStore

/// A collection's tables and indexes, as one transaction knows them.
final class PGCollection {
    let id: Int64
    /// The documents: `c_<id> (_id, body, doc)`.
    let table: String
    /// The index entries: `x_<id> (ix, key, _id)`, made with the first
    /// index: one row per key of each document for each index (``IndexKeys``, the LMDB store's keys), so
    /// multikey and numeric-equality semantics are LMDB's exactly.
    let entries: String
    var indexes: [PGIndex]
    /// Bumped by every write to the collection, so readers know their
    /// prefetched rows may be stale.
    var generation = 0
    init(schema: String, id: Int64, indexes: [PGIndex]) {
        self.id = id
        table = "\(schema).c_\(id)"
        entries = "\(schema).x_\(id)"
        self.indexes = indexes
    }
}

/// One secondary index.
struct PGIndex {
    let id: Int64
    let path: FieldPath
    let unique: Bool
    var record: JSON {
        .object(JSONObject([("id", .int(id)), ("path", .string(path.description)), ("unique", .bool(unique))]))
    }
}

extension PostgresTransaction {
    /// One index key of a document: which index, the key (hex), the value.
    struct Entry {
        let index: PGIndex
        let key: String
        let value: JSON
    }

    /// What changing a document from `old` (nil: none) to `new` does to its
    /// index entries, after checking every added unique one is free: a
    /// taken value fails with LMDB's message, naming both `_id`s, before
    /// anything is written.
    func checkedEntries(
        _ c: PGCollection, _ name: String, key: String, old: JSON?, new: JSON?
    ) throws
        -> (added: [Entry], removed: [Entry])
    {
        guard !c.indexes.isEmpty else { return ([], []) }
        var added: [Entry] = []
        var removed: [Entry] = []
        for index in c.indexes {
            let before = old.map { IndexKeys.of($0, path: index.path) } ?? []
            let after = new.map { IndexKeys.of($0, path: index.path) } ?? []
            for (k, value) in after where !before.contains(where: { $0.key == k }) {
                let entry = Entry(index: index, key: Self.hex(k), value: value)
                if index.unique { try checkFree(c, name, entry, key: key) }
                added.append(entry)
            }
            for (k, value) in before where !after.contains(where: { $0.key == k }) {
                removed.append(Entry(index: index, key: Self.hex(k), value: value))
            }
        }
        return (added, removed)
    }

    private func checkFree(_ c: PGCollection, _ name: String, _ e: Entry, key: String) throws {
        let taken = try sql(
            "SELECT _id FROM \(c.entries) WHERE ix = $1 AND key = $2 AND _id <> $3 LIMIT 1",
            ["\(e.index.id)", e.key, key])
        guard taken.count == 1, let other = taken.text(0, 0) else { return }
        throw StoreError(
            .duplicateKey,
            "collection '\(name)': unique index on '\(e.index.path)' already holds \(e.value.serialized) "
                + "for _id \(Self.id(fromKey: other).serialized), so _id \(Self.id(fromKey: key).serialized) "
                + "cannot have it")
    }

    /// Writes a document's entry changes.
    func write(_ change: (added: [Entry], removed: [Entry]), _ c: PGCollection, key: String) throws {
        for e in change.removed {
            try sql(
                "DELETE FROM \(c.entries) WHERE ix = $1 AND key = $2 AND _id = $3", ["\(e.index.id)", e.key, key])
        }
        for e in change.added {
            try sql(
                "INSERT INTO \(c.entries) (ix, key, _id) VALUES ($1, $2, $3)", ["\(e.index.id)", e.key, key])
        }
    }

    // MARK: - Creating and dropping indexes

    /// Creates a secondary index on a dotted path over the existing
    /// documents; see the LMDB store's `Transaction.createIndex`.
    @discardableResult
    public func createIndex(_ collection: String, path: String, unique: Bool = false) throws -> Bool {
        store.systemCatalog[collection] = nil
        try writable(collection)
        let fieldPath: FieldPath
        do { fieldPath = try FieldPath(path) } catch {
            throw StoreError(error.code, "collection '\(collection)': cannot index \(error.message)")
        }
        if path == "_id" { throw StoreError(.invalidName, "collection '\(collection)': _id is always indexed") }
        guard let c = try self.collection(collection, create: true) else { return false }
        if let existing = c.indexes.first(where: { $0.path == fieldPath }) {
            if existing.unique == unique { return false }
            throw StoreError(
                .indexExists, "collection '\(collection)': an index on '\(path)' exists with unique=\(existing.unique)")
        }
        // The entries table comes with the first index: DDL is what costs
        // most when a migration creates a collection.
        try sqlRun(
            """
            CREATE TABLE IF NOT EXISTS \(c.entries) (
                ix bigint NOT NULL,
                key text COLLATE "C" NOT NULL,
                _id text COLLATE "C" NOT NULL,
                PRIMARY KEY (ix, key, _id));
            CREATE INDEX IF NOT EXISTS x_\(c.id)_id ON \(c.entries) (_id)
            """)
        let id = Int64(try sql("SELECT nextval('\(schema).index_ids')").text(0, 0) ?? "") ?? 0
        let index = PGIndex(id: id, path: fieldPath, unique: unique)
        // Built in _id order, so the first conflict found is LMDB's.
        let rows = try sql("SELECT _id, body FROM \(c.table) ORDER BY _id")
        for i in 0..<rows.count {
            guard let key = rows.text(i, 0), let text = rows.text(i, 1) else { continue }
            let doc = try JSON(parsing: text)
            for (k, value) in IndexKeys.of(doc, path: fieldPath) {
                let entry = Entry(index: index, key: Self.hex(k), value: value)
                if unique { try checkFree(c, collection, entry, key: key) }
                try sql(
                    "INSERT INTO \(c.entries) (ix, key, _id) VALUES ($1, $2, $3)", ["\(id)", entry.key, key])
            }
        }
        if unique {
            // The server enforces it too, for writers that race.
            try sqlRun("CREATE UNIQUE INDEX x_\(c.id)_\(id) ON \(c.entries) (key) WHERE ix = \(id)")
        }
        c.indexes.append(index)
        try saveIndexes(c, collection)
        noteChange(collection) { $0.indexesCreated += 1 }
        return true
    }

    /// Drops the index on `path`.
    public func dropIndex(_ collection: String, path: String) throws {
        store.systemCatalog[collection] = nil
        try writable(collection)
        guard let c = try self.collection(collection) else {
            throw StoreError(.collectionNotFound, "collection '\(collection)' does not exist")
        }
        guard let i = c.indexes.firstIndex(where: { $0.path.description == path }) else {
            throw StoreError(.indexNotFound, "collection '\(collection)' has no index on '\(path)'")
        }
        let index = c.indexes.remove(at: i)
        try sql("DELETE FROM \(c.entries) WHERE ix = $1", ["\(index.id)"])
        if index.unique { try sqlRun("DROP INDEX IF EXISTS \(schema).x_\(c.id)_\(index.id)") }
        try saveIndexes(c, collection)
        noteChange(collection) { $0.indexesDropped += 1 }
    }

    /// The secondary indexes of a collection (`_id` is implicit).
    public func indexes(_ collection: String) throws -> [IndexInfo] {
        guard let c = try self.collection(collection) else {
            throw StoreError(.collectionNotFound, "collection '\(collection)' does not exist")
        }
        return c.indexes.map { IndexInfo(path: $0.path.description, unique: $0.unique) }
    }

    private func saveIndexes(_ c: PGCollection, _ name: String) throws {
        try sql(
            "UPDATE \(schema).collections SET indexes = $2::jsonb WHERE name = $1",
            [name, JSON.array(c.indexes.map(\.record)).serialized])
    }

    // MARK: - Keys

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The `_id` a key text stands for (the inverse of `key(_:)`).
    static func id(fromKey key: String) -> JSON {
        if key.hasPrefix("i"), let biased = UInt64(key.dropFirst(), radix: 16) {
            return .int(Int64(bitPattern: biased ^ (1 << 63)))
        }
        return .string(String(key.dropFirst()))
    }
}
