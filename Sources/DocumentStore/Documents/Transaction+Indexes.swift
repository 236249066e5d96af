import CLMDB

/// What a secondary index holds for a document, on every backend.
public enum IndexKeys {
    /// The keys of `doc` for an index on `path`: one per value the path
    /// reaches, plus one per element of an array value (a multikey index),
    /// without repeats. Values equal under the query language (`1` and
    /// `1.0`) get equal keys; a missing path gets none (null gets one).
    public static func of(_ doc: JSON, path: FieldPath) -> [(key: [UInt8], value: JSON)] {
        var out: [(key: [UInt8], value: JSON)] = []
        func add(_ v: JSON) {
            let k = key(v)
            if !out.contains(where: { $0.key == k }) { out.append((k, v)) }
        }
        for v in path.values(in: doc) {
            add(v)
            if case .array(let items) = v { items.forEach(add) }
        }
        return out
    }

    /// The key an equality lookup of `value` probes.
    public static func key(_ value: JSON) -> [UInt8] {
        var k: [UInt8] = []
        KeyEncoding.appendValueKey(value, to: &k)
        return k
    }
}

extension Transaction {
    // MARK: - Index entries

    struct IndexEntry {
        var key: [UInt8]
        var value: JSON
    }

    /// The index keys of `doc` for `spec` (``IndexKeys/of(_:path:)``), each
    /// behind the index's id.
    func indexKeys(_ doc: JSON, _ spec: IndexSpec) -> [IndexEntry] {
        IndexKeys.of(doc, path: spec.path).map { e in
            var k: [UInt8] = []
            KeyEncoding.appendBigEndian(spec.id, to: &k)
            return IndexEntry(key: k + e.key, value: e.value)
        }
    }

    func checkUnique(
        _ s: CollectionState, _ spec: IndexSpec, _ entry: IndexEntry, idKey: UnsafeRawBufferPointer
    ) throws(StoreError) {
        let found = try entry.key.bytes { ek throws(StoreError) in try get(env.index, ek) }
        guard let found, !found.sameBytes(as: idKey) else { return }
        throw StoreError(
            .duplicateKey,
            "collection '\(s.name)': unique index on '\(spec.path)' already holds \(entry.value.serialized) "
                + "for _id \(KeyEncoding.decodeID(found).serialized), so _id \(KeyEncoding.decodeID(idKey).serialized) "
                + "cannot have it"
        )
    }

    /// Moves a document's index entries from `old` to `new`, checking
    /// unique indexes before anything is written.
    func reindex(
        _ s: CollectionState, _ specs: [IndexSpec], idKey: UnsafeRawBufferPointer, old: JSON?, new: JSON?
    ) throws(StoreError) {
        var plans: [(removed: [IndexEntry], added: [IndexEntry])] = []
        for spec in specs {
            let before = old.map { indexKeys($0, spec) } ?? []
            let after = new.map { indexKeys($0, spec) } ?? []
            let removed = before.filter { b in !after.contains { $0.key == b.key } }
            let added = after.filter { a in !before.contains { $0.key == a.key } }
            if spec.unique { for e in added { try checkUnique(s, spec, e, idKey: idKey) } }
            plans.append((removed, added))
        }
        for (removed, added) in plans {
            for e in removed { try e.key.bytes { ek throws(StoreError) in _ = try del(env.index, ek, idKey) } }
            for e in added {
                try e.key.bytes { ek throws(StoreError) in _ = try put(env.index, ek, idKey, flags: MDB_NODUPDATA) }
            }
        }
    }

    func parseStored(
        _ s: CollectionState, _ bytes: UnsafeRawBufferPointer, idKey: UnsafeRawBufferPointer
    ) throws(StoreError) -> JSONObject {
        if let v = try? JSONParser.parse(bytes), case .object(let o) = v { return o }
        throw StoreError(
            .corrupted,
            "\(env.path): collection '\(s.name)': the stored document with _id "
                + "\(KeyEncoding.decodeID(idKey).serialized) is damaged"
        )
    }

    // MARK: - Indexes

    /// Creates a secondary index on a dotted path, built over existing
    /// documents. Returns false if an identical index exists. A unique
    /// violation names the two conflicting `_id`s and leaves nothing behind.
    @discardableResult
    public func createIndex(_ collection: String, path: String, unique: Bool = false) throws(StoreError) -> Bool {
        try writable(collection)
        let fieldPath: FieldPath
        do { fieldPath = try FieldPath(path) } catch {
            throw StoreError(error.code, "collection '\(collection)': cannot index \(error.message)")
        }
        if path == "_id" { throw StoreError(.invalidName, "collection '\(collection)': _id is always indexed") }
        guard let s = try state(collection, create: true) else { return false }
        if let existing = s.indexes.first(where: { $0.path == fieldPath }) {
            if existing.unique == unique { return false }
            throw StoreError(
                .indexExists, "collection '\(collection)': an index on '\(path)' exists with unique=\(existing.unique)")
        }
        let spec = IndexSpec(id: try nextID(), path: fieldPath, unique: unique)
        // A top-level path reads just its value from the stored bytes.
        var quotedKey: [UInt8]?
        if fieldPath.components.count == 1 {
            var q: [UInt8] = []
            JSONSerializer.writeString(fieldPath.components[0], into: &q)
            quotedKey = q
        }
        do {
            try visit(s, .all) { idKey, bytes, _ throws(StoreError) in
                let doc: JSON
                if let quotedKey {
                    let range = quotedKey.withUnsafeBytes { RawDocument.findValue(ofQuotedKey: $0, in: bytes) }
                    guard let range else { return .keep }
                    guard let value = try? JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[range])) else {
                        _ = try parseStored(s, bytes, idKey: idKey)  // reports the damage
                        return .keep
                    }
                    doc = .object(JSONObject(uniqueFields: [(fieldPath.components[0], value)]))
                } else {
                    doc = .object(try parseStored(s, bytes, idKey: idKey))
                }
                try reindex(s, [spec], idKey: idKey, old: nil, new: doc)
                return .keep
            }
        } catch {
            try deleteIndexEntries(spec)
            throw error
        }
        s.indexes.append(spec)
        s.dirty = true
        noteChange(collection) { $0.indexesCreated += 1 }
        return true
    }

    /// Drops the index on `path`.
    public func dropIndex(_ collection: String, path: String) throws(StoreError) {
        try writable(collection)
        let s = try existingState(collection)
        guard let i = s.indexes.firstIndex(where: { $0.path.description == path }) else {
            throw StoreError(.indexNotFound, "collection '\(collection)' has no index on '\(path)'")
        }
        try deleteIndexEntries(s.indexes[i])
        s.indexes.remove(at: i)
        s.dirty = true
        noteChange(collection) { $0.indexesDropped += 1 }
    }

    func deleteIndexEntries(_ spec: IndexSpec) throws(StoreError) {
        var prefix: [UInt8] = []
        KeyEncoding.appendBigEndian(spec.id, to: &prefix)
        try deleteRange(env.index, prefix: prefix)
    }

    /// The secondary indexes of a collection (`_id` is implicit).
    public func indexes(_ collection: String) throws(StoreError) -> [IndexInfo] {
        try usable()
        return try existingState(collection).indexes.map { IndexInfo(path: $0.path.description, unique: $0.unique) }
    }
}
