import CLMDB

extension Transaction {
    // MARK: - Planning

    /// The cheapest key access that serves `filter`, if any (``Filter/keyAccess(indexes:)``).
    func plan(_ s: CollectionState, _ filter: Filter) -> KeyAccess? {
        filter.keyAccess(indexes: s.indexes.map { ($0.path, $0.unique) })
    }

    /// Describes how `find`, `count`, `update` and `delete` would run `filter`.
    public func explain(_ collection: String, filter: Filter = .all) throws(StoreError) -> QueryPlan {
        try usable()
        guard let s = try state(collection), let access = plan(s, filter) else {
            return QueryPlan(kind: .collectionScan)
        }
        return access.plan
    }

    /// Full document keys (collection prefix + `_id` key) that may match,
    /// sorted and without duplicates.
    func candidateKeys(_ s: CollectionState, _ access: KeyAccess) throws(StoreError) -> [[UInt8]] {
        var out: [[UInt8]] = []
        if let i = access.index {
            let spec = s.indexes[i]
            let c = try openCursor(env.index)
            defer { mdb_cursor_close(c) }
            for v in access.values {
                var key: [UInt8] = []
                KeyEncoding.appendBigEndian(spec.id, to: &key)
                KeyEncoding.appendValueKey(v, to: &key)
                var k = MDB_val()
                var d = MDB_val()
                var rc = key.withUnsafeBytes { kb in
                    k = MDB_val(kb)
                    return mdb_cursor_get(c, &k, &d, MDB_SET)
                }
                while rc == 0 {
                    var full = s.prefix
                    full.append(contentsOf: UnsafeRawBufferPointer(start: d.mv_data, count: d.mv_size))
                    out.append(full)
                    rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP)
                }
                if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get") }
            }
        } else {
            for id in access.primaryKeys {
                var key = s.prefix
                // Values that cannot be an _id match nothing.
                if (try? KeyEncoding.appendID(id, to: &key)) != nil { out.append(key) }
            }
        }
        if out.count > 1 {
            out.sort { $0.lexicographicallyPrecedes($1) }
            var unique: [[UInt8]] = []
            for k in out where unique.last != k { unique.append(k) }
            out = unique
        }
        return out
    }
}
