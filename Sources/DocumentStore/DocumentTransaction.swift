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
    /// Runs `body` with the reserved (`_`) collections writable: for the engine.
    func withSystemAccess<R>(_ body: () throws -> R) rethrows -> R
}

extension DocumentTransaction {
    /// Every document, in `_id` order.
    public func findAll(_ collection: String) throws -> [JSON] { try findAll(collection, filter: .all) }
    /// The number of documents.
    public func count(_ collection: String) throws -> Int { try count(collection, filter: .all) }
}

extension Transaction: DocumentTransaction {
    public func findAll(_ collection: String, filter: Filter) throws -> [JSON] {
        try find(collection, filter: filter).all()
    }
}
