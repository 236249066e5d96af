import DocumentStore

/// Listing, planning and the candidate narrowing of reads: `_id` equality
/// reads by primary key and equality on an indexed path reads the index
/// entries, as on LMDB (one planner, ``Filter/keyAccess(indexes:)``). The
/// store's own filter then decides each candidate, so answers are LMDB's.
extension PostgresTransaction {
    /// Every collection with its document count, in name (byte) order.
    public func collections() throws -> [CollectionInfo] {
        try usable()
        return try collectionNames().map { CollectionInfo(name: $0, count: try count($0)) }
    }

    /// True if the collection exists.
    public func collectionExists(_ name: String) throws -> Bool {
        try usable()
        try Transaction.validate(name)
        return try collection(name) != nil
    }

    /// Describes how `find`, `count`, `update` and `delete` run `filter`.
    public func explain(_ collection: String, filter: Filter = .all) throws -> QueryPlan {
        try usable()
        try Transaction.validate(collection)
        guard let c = try self.collection(collection), let access = plan(c, filter) else {
            return QueryPlan(kind: .collectionScan)
        }
        return access.plan
    }

    func plan(_ c: PGCollection, _ filter: Filter) -> KeyAccess? {
        filter.keyAccess(indexes: c.indexes.map { ($0.path, $0.unique) })
    }

    /// The SQL condition on `_id` that keeps the candidates of `filter`
    /// (nil: every document is one), with its parameters numbered from
    /// `first`.
    func candidates(_ c: PGCollection, _ filter: Filter, first: Int) -> (condition: String, parameters: [String?])? {
        guard let access = plan(c, filter) else { return containment(filter, first: first) }
        if let i = access.index {
            let keys = access.values.map { Self.hex(IndexKeys.key($0)) }
            return (
                "_id IN (SELECT _id FROM \(c.entries) WHERE ix = $\(first) AND key = ANY($\(first + 1)::text[]))",
                [String(c.indexes[i].id), Self.textArray(keys)]
            )
        }
        let keys = access.primaryKeys.compactMap { try? Self.key($0) }
        return ("_id = ANY($\(first)::text[])", [Self.textArray(keys)])
    }

    /// Without a key to look up: the server keeps only documents whose
    /// required string or boolean fields (``Filter/requiredScalarFields()``)
    /// hold the value or an array with it, by `jsonb` containment, instead of
    /// sending every row to be filtered here.
    func containment(_ filter: Filter, first: Int) -> (condition: String, parameters: [String?])? {
        let fields = filter.requiredScalarFields()
        guard !fields.isEmpty else { return nil }
        var conditions: [String] = []
        var parameters: [String?] = []
        for (field, value) in fields {
            let n = first + parameters.count
            conditions.append("(doc @> $\(n)::jsonb OR doc @> $\(n + 1)::jsonb)")
            parameters.append(JSON.object(JSONObject([(field, value)])).serialized)
            parameters.append(JSON.object(JSONObject([(field, .array([value]))])).serialized)
        }
        return (conditions.joined(separator: " AND "), parameters)
    }

    /// A PostgreSQL array literal of `items`, each quoted.
    static func textArray(_ items: [String]) -> String {
        var out = "{"
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            out += "\""
            for ch in item.unicodeScalars {
                if ch == "\"" || ch == "\\" { out += "\\" }
                out.unicodeScalars.append(ch)
            }
            out += "\""
        }
        return out + "}"
    }

    /// A reader with `options` (skip, limit, projection, sort) applied.
    public func openReader(_ collection: String, filter: Filter, options: FindOptions) throws -> any DocumentReader {
        let reader = try openReader(collection, filter: filter)
        return options.isDefault ? reader : try FindOptionsReader(reader, collection: collection, options: options)
    }
}

extension PostgresTransaction {
    /// The ``CollectionDigest`` of a collection (the LMDB store's, for the
    /// same contents), or "absent".
    public func digest(_ collection: String) throws -> String {
        try usable()
        try Transaction.validate(collection)
        guard let c = try self.collection(collection) else { return "absent" }
        var d = CollectionDigest(
            collection: collection, indexes: c.indexes.map { IndexInfo(path: $0.path.description, unique: $0.unique) })
        let reader = try self.reader(collection, filter: .all)
        defer { reader.close() }
        while let body = try reader.nextRaw(), let key = reader.key {
            try d.add(id: Self.id(fromKey: key), body: body)
        }
        return d.finalize()
    }
}
