import CLMDB

extension Transaction {
    // MARK: - Delete

    /// Deletes every document matching `filter`; returns how many.
    @discardableResult
    public func deleteMany(_ collection: String, filter: Filter) throws(StoreError) -> Int {
        try delete(collection, filter, one: false)
    }

    /// Deletes the first document (in `_id` order) matching `filter`.
    @discardableResult
    public func deleteOne(_ collection: String, filter: Filter) throws(StoreError) -> Int {
        try delete(collection, filter, one: true)
    }

    private func delete(_ collection: String, _ filter: Filter, one: Bool) throws(StoreError) -> Int {
        try writable(collection)
        guard let s = try state(collection) else { return 0 }
        var n = 0
        try poisoning { changed throws(StoreError) in
            try visit(s, filter) { idKey, bytes, doc throws(StoreError) in
                if one && n == 1 { return .stop }
                if !s.indexes.isEmpty {
                    let old = try doc.orParse { () throws(StoreError) in try parseStored(s, bytes, idKey: idKey) }
                    try reindex(s, s.indexes, idKey: idKey, old: .object(old), new: nil)
                }
                notePreImage(s, idKey: idKey, bytes: bytes)
                n += 1
                changed = true
                return .delete
            }
        }
        if n > 0 {
            s.count -= Int64(n)
            s.dirty = true
        }
        noteChange(collection) { $0.deleted += n }
        return n
    }
}
