/// A transaction that can also write the reserved (`_`) collections: the
/// engine's `_migrations` records. `package`, so that no user of the store
/// can reach it; every backend's transaction conforms.
package protocol SystemTransaction: DocumentTransaction {
    /// Runs `body` with the reserved (`_`) collections writable.
    func withSystemAccess<R>(_ body: () throws -> R) rethrows -> R
}

/// What every backend's transaction offers, with the same meaning and the
/// same errors: the LMDB store's ``Transaction`` and the PostgreSQL store's.
/// The engine's tracking records are written against it, and so are the
/// tests that run on both backends.
public protocol DocumentTransaction: AnyObject {
    /// Inserts a document (a JSON object); returns its `_id`.
    @discardableResult
    func insert(_ document: JSON, into collection: String) throws -> JSON
    /// Every document matching `filter`, in `_id` order.
    func findAll(_ collection: String, filter: Filter) throws -> [JSON]
    /// The first document (in `_id` order) matching `filter`.
    func findOne(_ collection: String, filter: Filter) throws -> JSON?
    /// The number of documents matching `filter` (0 for a missing collection).
    func count(_ collection: String, filter: Filter) throws -> Int
    /// Applies `update` to every document matching `filter`; with `upsert`
    /// and no match, inserts ``Transaction/upsertDocument(filter:update:)``.
    @discardableResult
    func updateMany(_ collection: String, filter: Filter, update: Update, upsert: Bool) throws -> UpdateResult
    /// Applies `update` to the first document matching `filter` (or upserts).
    @discardableResult
    func updateOne(_ collection: String, filter: Filter, update: Update, upsert: Bool) throws -> UpdateResult
    /// Deletes every document matching `filter`; returns how many.
    @discardableResult
    func deleteMany(_ collection: String, filter: Filter) throws -> Int
    /// Deletes the first document matching `filter`; returns 0 or 1.
    @discardableResult
    func deleteOne(_ collection: String, filter: Filter) throws -> Int
    /// Creates an empty collection; see `Transaction.createCollection`.
    @discardableResult
    func createCollection(_ name: String, ifNotExists: Bool) throws -> Bool
    /// Drops a collection; see `Transaction.dropCollection`.
    @discardableResult
    func dropCollection(_ name: String, ifExists: Bool) throws -> Bool
    /// Inserts JSON text; returns its `_id`, or `.null` unless `returningID`.
    @discardableResult
    func insert(json: UnsafeRawBufferPointer, into collection: String, returningID: Bool) throws -> JSON
    /// The stored JSON of the document whose `_id` is `id`, valid until the
    /// next call on the transaction; nil when there is none.
    func getRaw(_ collection: String, id: JSON) throws -> UnsafeRawBufferPointer?
    /// A cursor over the documents matching `filter` in `_id` order, that
    /// can replace or delete the one it is on (the per-document path).
    func openReader(_ collection: String, filter: Filter) throws -> any DocumentReader
    /// A read-only cursor with `options` (skip, limit, projection, sort).
    func openReader(_ collection: String, filter: Filter, options: FindOptions) throws -> any DocumentReader
    /// Every collection with its document count, in name (byte) order.
    func collections() throws -> [CollectionInfo]
    /// True if the collection exists.
    func collectionExists(_ name: String) throws -> Bool
    /// How `find`, `count`, `update` and `delete` would run `filter`.
    func explain(_ collection: String, filter: Filter) throws -> QueryPlan
    /// The ``CollectionDigest`` of a collection, or "absent".
    func digest(_ collection: String) throws -> String
    /// Commits the work so far and goes on in a new transaction (checkpoints).
    func commitAndContinue() throws
    /// Follows what user code changes from now on (nil: stop): counts per
    /// collection and, if the tracker keeps them, what documents were before.
    func track(_ tracker: ChangeTracker?)
    /// Creates a secondary index; false if an identical one exists.
    @discardableResult
    func createIndex(_ collection: String, path: String, unique: Bool) throws -> Bool
    /// Drops the index on `path`.
    func dropIndex(_ collection: String, path: String) throws
    /// The secondary indexes of a collection.
    func indexes(_ collection: String) throws -> [IndexInfo]
}

/// A cursor of a ``DocumentTransaction``, with the semantics of
/// ``DocumentCursor``: each document present at opening is visited at most
/// once, deleted ones are not, and writes through the same transaction are
/// safe while it is open.
public protocol DocumentReader: AnyObject {
    /// The next document's compact JSON, valid until the next call on this
    /// cursor; nil at the end.
    func nextRaw() throws -> UnsafeRawBufferPointer?
    /// Replaces the document `nextRaw` returned last, keeping its `_id`.
    func replaceCurrent(json: UnsafeRawBufferPointer) throws
    /// Deletes the document `nextRaw` returned last.
    func deleteCurrent() throws
    /// Releases the cursor; safe to call more than once.
    func close()
}

extension DocumentCursor: DocumentReader {}

extension DocumentReader {
    /// The next document, parsed; nil at the end.
    public func next() throws -> JSON? {
        guard let raw = try nextRaw() else { return nil }
        return try JSON(parsing: raw)
    }
    /// The remaining documents, parsed.
    public func all() throws -> [JSON] {
        var out: [JSON] = []
        while let d = try next() { out.append(d) }
        return out
    }
}

extension DocumentTransaction {
    /// The digest of every user collection (not `_`-prefixed), or of those
    /// in `only`, by name, and a total over them (a SHA-256 of
    /// `name digest` lines in name order).
    public func digests(_ only: [String]? = nil) throws -> (collections: [(String, String)], total: String) {
        var names: [String]
        if let only { names = only } else { names = try collections().map(\.name).filter { !$0.hasPrefix("_") } }
        var out: [(String, String)] = []
        for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            out.append((name, try digest(name)))
        }
        return (out, CollectionDigest.total(out))
    }

    /// Every document, in `_id` order.
    public func findAll(_ collection: String) throws -> [JSON] { try findAll(collection, filter: .all) }
    /// The number of documents.
    public func count(_ collection: String) throws -> Int { try count(collection, filter: .all) }
    /// The first document, in `_id` order.
    public func findOne(_ collection: String) throws -> JSON? { try findOne(collection, filter: .all) }
    /// A cursor over the matches of `filter` (read-only with `options`).
    public func find(
        _ collection: String, filter: Filter = .all, options: FindOptions = FindOptions()
    ) throws -> any DocumentReader {
        options.isDefault
            ? try openReader(collection, filter: filter) : try openReader(collection, filter: filter, options: options)
    }
    /// ``updateMany(_:filter:update:upsert:)`` without upsert.
    @discardableResult
    public func updateMany(_ collection: String, filter: Filter, update: Update) throws -> UpdateResult {
        try updateMany(collection, filter: filter, update: update, upsert: false)
    }
    /// ``updateOne(_:filter:update:upsert:)`` without upsert.
    @discardableResult
    public func updateOne(_ collection: String, filter: Filter, update: Update) throws -> UpdateResult {
        try updateOne(collection, filter: filter, update: update, upsert: false)
    }
    /// Creates a collection; an existing one is `.collectionExists`.
    @discardableResult
    public func createCollection(_ name: String) throws -> Bool { try createCollection(name, ifNotExists: false) }
    /// Drops a collection; a missing one is `.collectionNotFound`.
    @discardableResult
    public func dropCollection(_ name: String) throws -> Bool { try dropCollection(name, ifExists: false) }
    /// Creates a non-unique index.
    @discardableResult
    public func createIndex(_ collection: String, path: String) throws -> Bool {
        try createIndex(collection, path: path, unique: false)
    }
    /// Inserts JSON text and returns its `_id`.
    @discardableResult
    public func insert(json: UnsafeRawBufferPointer, into collection: String) throws -> JSON {
        try insert(json: json, into: collection, returningID: true)
    }
}

extension Transaction: SystemTransaction {}

extension Transaction: DocumentTransaction {
    public func findAll(_ collection: String, filter: Filter) throws -> [JSON] {
        try find(collection, filter: filter).all()
    }
    public func openReader(_ collection: String, filter: Filter) throws -> any DocumentReader {
        try find(collection, filter: filter)
    }
    public func openReader(_ collection: String, filter: Filter, options: FindOptions) throws -> any DocumentReader {
        try find(collection, filter: filter, options: options)
    }
}
