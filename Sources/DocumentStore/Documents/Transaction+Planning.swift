import CLMDB

extension Transaction {
    // MARK: - Planning

    /// How a filter's candidates are found when not by a scan: `_id`
    /// equality reads the primary keys; other equality uses an index.
    struct KeyAccess {
        let path: FieldPath
        /// nil for `_id`.
        let spec: IndexSpec?
        let values: [JSON]
    }

    /// The cheapest key access that serves `filter`, if any.
    func plan(_ s: CollectionState, _ filter: Filter) -> KeyAccess? {
        var options: [KeyAccess] = []
        for (path, values) in filter.indexableEqualities() {
            if path.components == ["_id"] {
                options.append(KeyAccess(path: path, spec: nil, values: values))
            } else if let spec = s.indexes.first(where: { $0.path == path }) {
                options.append(KeyAccess(path: path, spec: spec, values: values))
            }
        }
        // Primary key first, then unique indexes, then fewest keys.
        func rank(_ a: KeyAccess) -> (Int, Int) { (a.spec == nil ? 0 : a.spec?.unique == true ? 1 : 2, a.values.count) }
        return options.min { rank($0) < rank($1) }
    }

    /// Describes how `find`, `count`, `update` and `delete` would run `filter`.
    public func explain(_ collection: String, filter: Filter = .all) throws(StoreError) -> QueryPlan {
        try usable()
        guard let s = try state(collection), let access = plan(s, filter) else {
            return QueryPlan(kind: .collectionScan)
        }
        if access.spec == nil { return QueryPlan(kind: .primaryKey(keys: access.values.count)) }
        return QueryPlan(kind: .indexLookup(path: access.path.description, keys: access.values.count))
    }

    /// Full document keys (collection prefix + `_id` key) that may match,
    /// sorted and without duplicates.
    func candidateKeys(_ s: CollectionState, _ access: KeyAccess) throws(StoreError) -> [[UInt8]] {
        var out: [[UInt8]] = []
        if access.spec == nil {
            for v in access.values {
                var id = v
                if case .double(let d) = v, let i = Int64(exactly: d) { id = .int(i) }
                var key = s.prefix
                // Values that cannot be an _id match nothing.
                if (try? KeyEncoding.appendID(id, to: &key)) != nil { out.append(key) }
            }
        } else if let spec = access.spec {
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
