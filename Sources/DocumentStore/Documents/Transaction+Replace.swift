import CLMDB

extension Transaction {
    // MARK: - By key (cursor fast paths, get by _id)

    /// The stored bytes of the document whose `_id` is `id` (JSON), valid
    /// until the next write in this transaction; nil when there is none.
    public func getRaw(_ collection: String, id: JSON) throws(StoreError) -> UnsafeRawBufferPointer? {
        try usable()
        guard let s = try state(collection) else { return nil }
        var key = s.prefix
        do { try KeyEncoding.appendID(id, to: &key) } catch {
            throw StoreError(error.code, "collection '\(collection)': \(error.message)")
        }
        return try key.bytes { kb throws(StoreError) in try get(env.docs, kb) }
    }

    /// Replaces the document stored at `key` (collection prefix included)
    /// with the JSON object `json`, keeping its indexes right. `json` keeps
    /// the document's `_id` (it may omit it; another `_id` is an error).
    /// With `cursor` positioned on `key`, the value is written in place
    /// (`MDB_CURRENT`): no key search.
    /// - Returns: whether the stored bytes changed.
    func replace(
        _ s: CollectionState, key kb: UnsafeRawBufferPointer, with json: UnsafeRawBufferPointer, cursor: OpaquePointer?
    ) throws(StoreError) -> Bool {
        try writable(s.name)
        let id = KeyEncoding.decodeID(UnsafeRawBufferPointer(rebasing: kb[4...]))
        // Fast path: no index to maintain and text already in stored form,
        // carrying this _id or none: stored as given, without a parse.
        var parsedNew: JSONObject?
        if !(s.indexes.isEmpty && spliceCanonical(json, id: id)) {
            let new = try Self.replacement(json, id: id, collection: s.name)
            valueBuffer.removeAll(keepingCapacity: true)
            JSONSerializer.write(.object(new), into: &valueBuffer)
            parsedNew = new
        }
        let old = try stored(s, kb, cursor: cursor)
        guard !old.sameBytes(as: valueBuffer) else { return false }
        let idKey = UnsafeRawBufferPointer(rebasing: kb[4...])
        notePreImage(s, idKey: idKey, bytes: old)
        // With indexes the slow path always ran: the new document is parsed.
        if !s.indexes.isEmpty, let parsedNew {
            let before = try parseStored(s, old, idKey: idKey)
            try reindex(s, s.indexes, idKey: idKey, old: .object(before), new: .object(parsedNew))
        }
        try valueBuffer.bytes { vb throws(StoreError) in
            var k = MDB_val(kb)
            var v = MDB_val(vb)
            if let cursor {
                try check(mdb_cursor_put(cursor, &k, &v, UInt32(MDB_CURRENT)), "mdb_cursor_put")
            } else {
                _ = try put(env.docs, kb, vb)
            }
        }
        s.dirty = true
        noteChange(s.name) { $0.updated += 1 }
        return true
    }

    /// The stored bytes at `kb`; with `cursor` positioned there, read in
    /// place (no key search).
    private func stored(
        _ s: CollectionState, _ kb: UnsafeRawBufferPointer, cursor: OpaquePointer?
    ) throws(StoreError) -> UnsafeRawBufferPointer {
        var old: UnsafeRawBufferPointer?
        if let cursor {
            var k = MDB_val()
            var v = MDB_val()
            try check(mdb_cursor_get(cursor, &k, &v, MDB_GET_CURRENT), "mdb_cursor_get")
            old = UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
        } else {
            old = try get(env.docs, kb)
        }
        guard let old else {
            let id = KeyEncoding.decodeID(UnsafeRawBufferPointer(rebasing: kb[4...]))
            throw StoreError(.documentNotFound, "collection '\(s.name)': _id \(id.serialized) no longer exists")
        }
        return old
    }

    /// The document a replacement `json` makes of the one whose `_id` is
    /// `id`: an object that keeps that `_id` (or has none), `_id` first.
    package static func replacement(
        _ json: UnsafeRawBufferPointer, id: JSON, collection: String
    ) throws(StoreError) -> JSONObject {
        let parsed: JSON
        do { parsed = try JSONParser.parse(json) } catch {
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
        return new
    }

    /// Puts `json` into `valueBuffer` as stored (``CanonicalCheck/storedForm(of:id:into:)``).
    private func spliceCanonical(_ json: UnsafeRawBufferPointer, id: JSON) -> Bool {
        CanonicalCheck.storedForm(of: json, id: id, into: &valueBuffer)
    }

    /// Deletes the document stored at `key`, with its index entries.
    func delete(_ s: CollectionState, key kb: UnsafeRawBufferPointer) throws(StoreError) {
        try writable(s.name)
        let idKey = UnsafeRawBufferPointer(rebasing: kb[4...])
        let old = try stored(s, kb, cursor: nil)
        notePreImage(s, idKey: idKey, bytes: old)
        if !s.indexes.isEmpty {
            let before = try parseStored(s, old, idKey: idKey)
            try reindex(s, s.indexes, idKey: idKey, old: .object(before), new: nil)
        }
        _ = try del(env.docs, kb)
        s.count -= 1
        s.dirty = true
        noteChange(s.name) { $0.deleted += 1 }
    }
}
