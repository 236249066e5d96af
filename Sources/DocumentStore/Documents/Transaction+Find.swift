import CLMDB

extension Transaction {
    // MARK: - Find and count

    /// Documents matching `filter`, in `_id` order unless `options.sort` is set.
    /// The cursor is valid until the transaction ends.
    public func find(
        _ collection: String, filter: Filter = .all, options: FindOptions = FindOptions()
    ) throws(StoreError) -> DocumentCursor {
        try usable()
        try Self.validate(collection)
        let c = try DocumentCursor(
            txn: self, collection: collection, state: try state(collection), filter: filter, options: options)
        // Loops of find + close must not grow the list without bound.
        if cursors.count >= 64 { cursors.removeAll { $0.cursor?.isClosed ?? true } }
        cursors.append(c.handle)
        return c
    }

    /// The number of documents matching `filter`; `{}` reads no document.
    public func count(_ collection: String, filter: Filter = .all) throws(StoreError) -> Int {
        try usable()
        try Self.validate(collection)
        guard let s = try state(collection) else { return 0 }
        if filter.matchesEverything { return Int(s.count) }
        var n = 0
        try visit(s, filter) { _, _, _ throws(StoreError) in
            n += 1
            return .keep
        }
        return n
    }

    /// The first document matching `filter`, or nil.
    public func findOne(_ collection: String, filter: Filter = .all) throws(StoreError) -> JSON? {
        let c = try find(collection, filter: filter, options: FindOptions(limit: 1))
        defer { c.close() }
        return try c.next()
    }
}
