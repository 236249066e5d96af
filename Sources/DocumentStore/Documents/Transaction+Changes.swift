import CLMDB

/// What user code changed in one collection during a tracked transaction.
public struct CollectionChanges: Sendable, Equatable {
    public var inserted = 0
    public var updated = 0
    public var deleted = 0
    public var indexesCreated = 0
    public var indexesDropped = 0
    public var created = false
    public var dropped = false
    public init() {}
}

/// What a collection looked like before a tracked transaction first changed it.
public struct CollectionSnapshot: Sendable, Equatable {
    /// ``Transaction/digest(_:)`` at that moment.
    public var digest: String
    public var indexes: [IndexInfo]
    public var existed: Bool
}

/// A document that differs from what it was before a tracked transaction.
public struct DocumentDifference: Sendable, Equatable {
    public var id: JSON
    /// nil: the document did not exist (before), or no longer exists (after).
    public var before: JSON?
    public var after: JSON?
}

/// A collection that is not as it was before a tracked transaction.
public struct ContentDifference: Sendable, Equatable {
    public var collection: String
    public var before: CollectionSnapshot
    public var after: CollectionSnapshot
    /// Up to the number asked for, in `_id` order.
    public var documents: [DocumentDifference]
    /// How many documents differ in all.
    public var differingDocuments: Int
}

/// Follows the changes user code makes in a write transaction, never the
/// engine's own writes to reserved collections: counts per collection (for
/// dry runs) and, with `keepingPreImages`, each touched collection's
/// snapshot and each touched document's bytes from before its first change,
/// so that ``Transaction/differences(since:examples:)`` can tell whether a
/// later state equals the earlier one (reversibility checks). Pre-images
/// cost memory in proportion to the documents touched.
public final class ChangeTracker {
    /// Collections in the order they were first changed.
    public private(set) var order: [String] = []
    public private(set) var changes: [String: CollectionChanges] = [:]
    package let keepsPreImages: Bool
    private(set) var snapshots: [String: CollectionSnapshot] = [:]
    /// Collection → document key (after the collection prefix) → its bytes
    /// before the first change (nil: it did not exist).
    private(set) var preImages: [String: [[UInt8]: [UInt8]?]] = [:]

    public init(keepingPreImages: Bool = false) { keepsPreImages = keepingPreImages }

    /// Called by a backend's transaction before it first writes `collection`
    /// for user code: takes the snapshot the later comparison needs.
    package func willChange(_ collection: String, in txn: any DocumentTransaction) throws {
        guard changes[collection] == nil else { return }
        changes[collection] = CollectionChanges()
        order.append(collection)
        if keepsPreImages { snapshots[collection] = try txn.snapshot(collection) }
    }

    package func count(_ collection: String, _ change: (inout CollectionChanges) -> Void) {
        change(&changes[collection, default: CollectionChanges()])
    }

    /// Records a document's stored bytes before its first change (nil: it
    /// is new), by its `_id`.
    package func notePreImage(_ collection: String, id: JSON, bytes: UnsafeRawBufferPointer?) {
        guard keepsPreImages, let key = try? KeyEncoding.idKey(id) else { return }
        key.withUnsafeBytes { notePreImage(collection, key: $0, bytes: bytes) }
    }

    func notePreImage(_ collection: String, key: UnsafeRawBufferPointer, bytes: UnsafeRawBufferPointer?) {
        guard keepsPreImages else { return }
        let k = [UInt8](key)
        if preImages[collection]?[k] != nil { return }
        preImages[collection, default: [:]][k] = .some(bytes.map { [UInt8]($0) })
    }
}

extension Transaction {
    /// Follows what user code changes from now on (nil: stop).
    public func track(_ tracker: ChangeTracker?) { changeTracker = tracker }

    /// Calls `change` on the tracker's counts for `collection`, unless the
    /// write is the engine's own.
    func noteChange(_ collection: String, _ change: (inout CollectionChanges) -> Void) {
        guard let t = changeTracker, !isSystemWrite else { return }
        t.count(collection, change)
    }

    /// Records a document's bytes before its first change (nil: it is new).
    func notePreImage(_ s: CollectionState, idKey: UnsafeRawBufferPointer, bytes: UnsafeRawBufferPointer?) {
        guard let t = changeTracker, t.keepsPreImages, !isSystemWrite else { return }
        t.notePreImage(s.name, key: idKey, bytes: bytes)
    }

    // MARK: Digest

    /// A SHA-256 of a collection's index definitions and its documents in
    /// `_id` order (their stored bytes, so field order counts), or "absent"
    /// (``CollectionDigest``). Equal digests mean equal contents.
    public func digest(_ collection: String) throws(StoreError) -> String {
        try usable()
        guard let s = try state(collection) else { return "absent" }
        var d = CollectionDigest(
            collection: collection, indexes: s.indexes.map { IndexInfo(path: $0.path.description, unique: $0.unique) })
        try scanAll(s) { key, value in d.add(idKey: key, body: value) }
        return d.finalize()
    }

    /// Positions `c` on the first document of `s` (or past it: check the prefix).
    func seekFirstDocument(_ c: OpaquePointer, of s: CollectionState, _ k: inout MDB_val, _ v: inout MDB_val) -> Int32 {
        s.prefix.withUnsafeBytes { p in
            k = MDB_val(p)
            return mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
        }
    }

    /// Every document of `s` in key order: (key after the prefix, bytes).
    func scanAll(
        _ s: CollectionState, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(StoreError) -> Void
    ) throws(StoreError) {
        let c = try openCursor(env.docs)
        defer { mdb_cursor_close(c) }
        var k = MDB_val()
        var v = MDB_val()
        var rc = seekFirstDocument(c, of: s, &k, &v)
        while rc == 0 {
            let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            guard key.count > 4, key.starts(with: s.prefix) else { break }
            try body(
                UnsafeRawBufferPointer(rebasing: key[4...]), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)
        }
        if rc != 0 && rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get") }
    }
}

extension DocumentTransaction {
    /// What `collection` looks like now, for a later comparison.
    package func snapshot(_ collection: String) throws -> CollectionSnapshot {
        let exists = try collectionExists(collection)
        return CollectionSnapshot(
            digest: try digest(collection), indexes: exists ? try indexes(collection) : [], existed: exists)
    }

    /// The collections `tracker` saw change whose contents now differ from
    /// before their first change, each with up to `examples` differing
    /// documents. Needs a tracker made with `keepingPreImages`.
    public func differences(since tracker: ChangeTracker, examples: Int = 3) throws -> [ContentDifference] {
        var out: [ContentDifference] = []
        for name in tracker.order {
            guard let before = tracker.snapshots[name] else { continue }
            let after = try snapshot(name)
            guard after != before else { continue }
            var docs: [DocumentDifference] = []
            var differing = 0
            let images = (tracker.preImages[name] ?? [:]).sorted { $0.key.lexicographicallyPrecedes($1.key) }
            for (key, old) in images {
                let id = key.withUnsafeBytes { KeyEncoding.decodeID($0) }
                let now = after.existed ? try getRaw(name, id: id).map { [UInt8]($0) } : nil
                guard now != old else { continue }
                differing += 1
                guard docs.count < examples else { continue }
                func parsed(_ b: [UInt8]?) -> JSON? {
                    b.flatMap { b in b.withUnsafeBytes { try? JSONParser.parse($0) } }
                }
                docs.append(DocumentDifference(id: id, before: parsed(old), after: parsed(now)))
            }
            out.append(
                ContentDifference(
                    collection: name, before: before, after: after, documents: docs, differingDocuments: differing))
        }
        return out
    }
}
