import CLMDB

extension Transaction {
    // MARK: - Update

    /// Updates every document matching `filter`.
    /// With `upsert` and no match, inserts one document built from the
    /// filter's equality fields with the update applied.
    @discardableResult
    public func updateMany(
        _ collection: String, filter: Filter, update: Update, upsert: Bool = false
    ) throws(StoreError) -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: false)
    }

    /// Updates the first document (in `_id` order) matching `filter`.
    @discardableResult
    public func updateOne(
        _ collection: String, filter: Filter, update: Update, upsert: Bool = false
    ) throws(StoreError) -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: true)
    }

    private func performUpdate(
        _ collection: String, _ filter: Filter, _ update: Update, upsert: Bool, one: Bool
    ) throws(StoreError) -> UpdateResult {
        try writable(collection)
        var result = UpdateResult(matched: 0, modified: 0, upsertedID: nil)
        guard let s = try state(collection, create: upsert) else { return result }
        let affected: [IndexSpec]
        if let touched = update.touchedPaths {
            affected = s.indexes.filter { spec in touched.contains { $0.overlaps(spec.path) } }
        } else {
            affected = s.indexes
        }
        let splice = affected.isEmpty ? update.topLevelSets.flatMap { $0.count == 1 ? $0[0] : nil } : nil
        try poisoning { changed throws(StoreError) in
            try visit(s, filter) { idKey, bytes, doc throws(StoreError) in
                if one && result.matched == 1 { return .stop }
                result.matched += 1
                if let (key, value) = splice {
                    let differs = key.withUnsafeBytes { kb in
                        value.withUnsafeBytes { vb in
                            RawDocument.set(quotedKey: kb, value: vb, in: bytes, into: &valueBuffer)
                        }
                    }
                    guard differs else { return .keep }
                } else {
                    let old = try doc.orParse { () throws(StoreError) in try parseStored(s, bytes, idKey: idKey) }
                    var new = old
                    do throws(StoreError) { try update.apply(to: &new) } catch {
                        throw StoreError(
                            error.code,
                            "collection '\(s.name)', _id \(KeyEncoding.decodeID(idKey).serialized): \(error.message)")
                    }
                    valueBuffer.removeAll(keepingCapacity: true)
                    JSONSerializer.write(.object(new), into: &valueBuffer)
                    if bytes.sameBytes(as: valueBuffer) { return .keep }
                    try reindex(s, affected, idKey: idKey, old: .object(old), new: .object(new))
                }
                notePreImage(s, idKey: idKey, bytes: bytes)
                result.modified += 1
                changed = true
                return .replaceWithValueBuffer
            }
        }
        if result.matched == 0 && upsert {
            var obj = try Self.upsertDocument(filter: filter, update: update, collection: s.name)
            result.upsertedID = try insert(&obj, into: s)
        }
        if result.modified > 0 { s.dirty = true }
        noteChange(collection) { $0.updated += result.modified }
        return result
    }

    /// The document an upsert inserts when nothing matched: the filter's
    /// plain equality fields, with the update applied.
    public static func upsertDocument(
        filter: Filter, update: Update, collection: String
    ) throws(StoreError)
        -> JSONObject
    {
        var obj = JSONObject()
        seed(&obj, from: filter.root)
        do { try update.apply(to: &obj) } catch {
            throw StoreError(error.code, "collection '\(collection)', upsert: \(error.message)")
        }
        return obj
    }

    /// Copies a filter's plain equality fields into an upserted document.
    static func seed(_ obj: inout JSONObject, from node: Filter.Node) {
        switch node {
        case .and(let subs): for n in subs { seed(&obj, from: n) }
        case .field(let path, let preds):
            for case .eq(let v) in preds {
                var root = JSON.object(obj)
                try? Update.apply(.set(path, v), to: &root)
                if case .object(let o) = root { obj = o }
            }
        default: break
        }
    }
}
