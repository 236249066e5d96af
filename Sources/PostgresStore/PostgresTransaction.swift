import DocumentStore

/// One transaction of a ``PostgresDocumentStore``: the operations of the
/// LMDB store's `Transaction`, with the same results and the same errors.
public final class PostgresTransaction: DocumentTransaction {
    unowned let store: PostgresDocumentStore
    let readOnly: Bool
    var ended = false
    /// Whether the reserved (`_`) collections are writable: for the engine.
    private var systemAccess = false
    /// Collection name → table id, for this transaction.
    private var tables: [String: Int64] = [:]

    init(store: PostgresDocumentStore, readOnly: Bool) {
        self.store = store
        self.readOnly = readOnly
    }

    private var connection: Connection { store.connection }
    private var schema: String { store.schema }

    // MARK: - Collections

    public func withSystemAccess<R>(_ body: () throws -> R) rethrows -> R {
        let saved = systemAccess
        systemAccess = true
        defer { systemAccess = saved }
        return try body()
    }

    private func usable() throws(StoreError) {
        if ended {
            throw StoreError(
                .transactionEnded,
                "\(connection.name): the transaction has ended; use it only inside its read or write closure")
        }
    }

    private func writable(_ collection: String) throws(StoreError) {
        try usable()
        if readOnly {
            throw StoreError(.readOnlyTransaction, "cannot write collection '\(collection)' in a read transaction")
        }
        try Transaction.validate(collection)
        if !systemAccess && collection.utf8.first == UInt8(ascii: "_") {
            throw StoreError(
                .reservedCollection,
                "collection '\(collection)' is reserved for the system "
                    + "(names starting with '_' are read-only to user code)")
        }
    }

    /// The table of `collection`, creating it when `create` is set.
    private func table(_ collection: String, create: Bool = false) throws -> String? {
        if let id = tables[collection] { return "\(schema).c_\(id)" }
        let found = try connection.execute("SELECT id FROM \(schema).collections WHERE name = $1", [collection])
        var id = found.count == 1 ? found.text(0, 0).flatMap { Int64($0) } : nil
        if id == nil && create {
            let made = try connection.execute(
                "INSERT INTO \(schema).collections (name) VALUES ($1) RETURNING id", [collection])
            id = made.text(0, 0).flatMap { Int64($0) }
            if let id {
                try connection.run(
                    """
                    CREATE TABLE \(schema).c_\(id) (
                        _id text COLLATE "C" PRIMARY KEY,
                        body text NOT NULL,
                        doc jsonb GENERATED ALWAYS AS (body::jsonb) STORED)
                    """)
            }
        }
        guard let id else { return nil }
        tables[collection] = id
        return "\(schema).c_\(id)"
    }

    /// Creates an empty collection. Returns false if it existed (with
    /// `ifNotExists`); otherwise an existing one is `.collectionExists`.
    @discardableResult
    public func createCollection(_ name: String, ifNotExists: Bool = false) throws -> Bool {
        try writable(name)
        if try table(name) != nil {
            if ifNotExists { return false }
            throw StoreError(.collectionExists, "collection '\(name)' already exists")
        }
        _ = try table(name, create: true)
        return true
    }

    /// Drops a collection with its documents. Returns false if it did not
    /// exist (with `ifExists`); otherwise a missing one is `.collectionNotFound`.
    @discardableResult
    public func dropCollection(_ name: String, ifExists: Bool = false) throws -> Bool {
        try writable(name)
        guard let t = try table(name) else {
            if ifExists { return false }
            throw StoreError(.collectionNotFound, "collection '\(name)' does not exist")
        }
        try connection.run("DROP TABLE \(t)")
        try connection.execute("DELETE FROM \(schema).collections WHERE name = $1", [name])
        tables[name] = nil
        return true
    }

    /// The names of the collections, in byte order.
    public func collectionNames() throws -> [String] {
        try usable()
        let rows = try connection.execute("SELECT name FROM \(schema).collections ORDER BY name")
        return (0..<rows.count).compactMap { rows.text($0, 0) }
    }

    // MARK: - Documents

    /// Inserts a document (a JSON object) and returns its `_id`; see the
    /// LMDB store's `Transaction.insert(_:into:)`.
    @discardableResult
    public func insert(_ document: JSON, into collection: String) throws -> JSON {
        try writable(collection)
        guard case .object(var obj) = document else {
            throw StoreError(
                .invalidDocument,
                "collection '\(collection)': a document must be a JSON object, not \(document.typeName)")
        }
        let id: JSON
        if let given = obj["_id"] {
            id = given
            if obj.fields.first?.key != "_id" {
                obj["_id"] = nil
                obj.prepend("_id", given)
            }
        } else {
            id = .string(ObjectID.generate())
            obj.prepend("_id", id)
        }
        let key: String
        do { key = try Self.key(id) } catch {
            throw StoreError(error.code, "collection '\(collection)': \(error.message)")
        }
        guard let t = try table(collection, create: true) else { return id }
        let rows = try connection.execute(
            "INSERT INTO \(t) (_id, body) VALUES ($1, $2) ON CONFLICT (_id) DO NOTHING",
            [key, JSON.object(obj).serialized])
        if rows.affected == 0 {
            throw StoreError(.duplicateKey, "collection '\(collection)': duplicate _id \(id.serialized)")
        }
        return id
    }

    public func findAll(_ collection: String, filter: Filter) throws -> [JSON] {
        var out: [JSON] = []
        try visit(collection, filter) { _, doc in
            out.append(doc)
            return .keep
        }
        return out
    }

    public func findOne(_ collection: String, filter: Filter) throws -> JSON? {
        var found: JSON?
        try visit(collection, filter) { _, doc in
            found = doc
            return .stop
        }
        return found
    }

    public func count(_ collection: String, filter: Filter) throws -> Int {
        try usable()
        try Transaction.validate(collection)
        if filter.matchesEverything {
            guard let t = try table(collection) else { return 0 }
            return Int(try connection.execute("SELECT count(*) FROM \(t)").text(0, 0) ?? "0") ?? 0
        }
        var n = 0
        try visit(collection, filter) { _, _ in
            n += 1
            return .keep
        }
        return n
    }

    public func updateMany(
        _ collection: String, filter: Filter, update: Update, upsert: Bool = false
    ) throws -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: false)
    }

    public func updateOne(
        _ collection: String, filter: Filter, update: Update, upsert: Bool = false
    ) throws -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: true)
    }

    private func performUpdate(
        _ collection: String, _ filter: Filter, _ update: Update, upsert: Bool, one: Bool
    )
        throws -> UpdateResult
    {
        try writable(collection)
        var result = UpdateResult(matched: 0, modified: 0, upsertedID: nil)
        guard let t = try table(collection, create: upsert) else { return result }
        try visit(collection, filter) { key, doc in
            result.matched += 1
            guard case .object(var new) = doc else { return .keep }
            do throws(StoreError) { try update.apply(to: &new) } catch {
                throw StoreError(
                    error.code,
                    "collection '\(collection)', _id \(doc.objectValue?["_id"]?.serialized ?? "?"): "
                        + error.message)
            }
            let body = JSON.object(new).serialized
            guard body != doc.serialized else { return one ? .stop : .keep }
            try connection.execute("UPDATE \(t) SET body = $2 WHERE _id = $1", [key, body])
            result.modified += 1
            return one ? .stop : .keep
        }
        if result.matched == 0 && upsert {
            let doc = try Transaction.upsertDocument(filter: filter, update: update, collection: collection)
            result.upsertedID = try insert(.object(doc), into: collection)
        }
        return result
    }

    public func deleteMany(_ collection: String, filter: Filter) throws -> Int {
        try delete(collection, filter, one: false)
    }

    public func deleteOne(_ collection: String, filter: Filter) throws -> Int {
        try delete(collection, filter, one: true)
    }

    private func delete(_ collection: String, _ filter: Filter, one: Bool) throws -> Int {
        try writable(collection)
        guard let t = try table(collection) else { return 0 }
        if filter.matchesEverything && !one {
            return try connection.execute("DELETE FROM \(t)").affected
        }
        var keys: [String] = []
        try visit(collection, filter) { key, _ in
            keys.append(key)
            return one ? .stop : .keep
        }
        for key in keys { try connection.execute("DELETE FROM \(t) WHERE _id = $1", [key]) }
        return keys.count
    }

    enum Visit { case keep, stop }

    /// Calls `body` with each document matching `filter`, in `_id` order,
    /// with its key. An `_id` equality reads its one row; anything else
    /// reads every row and asks ``Filter`` (exact by construction).
    private func visit(_ collection: String, _ filter: Filter, _ body: (String, JSON) throws -> Visit) throws {
        try usable()
        try Transaction.validate(collection)
        guard let t = try table(collection) else { return }
        let rows: Rows
        if let id = filter.singlePrimaryKey, let key = try? Self.key(id) {
            rows = try connection.execute("SELECT _id, body FROM \(t) WHERE _id = $1", [key])
        } else {
            rows = try connection.execute("SELECT _id, body FROM \(t) ORDER BY _id")
        }
        for i in 0..<rows.count {
            guard let key = rows.text(i, 0), let bytes = rows.bytes(i, 1) else { continue }
            let doc: JSON
            do { doc = try JSON(parsing: bytes) } catch {
                throw StoreError(.corrupted, "collection '\(collection)': the stored document \(key) is damaged")
            }
            guard filter.matches(doc) else { continue }
            if try body(key, doc) == .stop { return }
        }
    }

    // MARK: - Keys

    /// The `_id` column's text: order-preserving under `COLLATE "C"`.
    static func key(_ id: JSON) throws(StoreError) -> String {
        switch id {
        case .int(let i):
            let biased = UInt64(bitPattern: i) ^ (1 << 63)
            let hex = String(biased, radix: 16)
            return "i" + String(repeating: "0", count: 16 - hex.count) + hex
        case .string(let s):
            guard s.utf8.count <= 255 else {
                throw StoreError(.invalidDocument, "_id string is \(s.utf8.count) bytes; the limit is 255")
            }
            return "s" + s
        default:
            throw StoreError(
                .invalidDocument, "_id must be a string or an integer, not \(id.typeName) \(id.serialized)")
        }
    }
}
