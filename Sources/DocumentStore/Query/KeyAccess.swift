/// How a filter's candidates are found when not by reading the whole
/// collection: `_id` equality reads primary keys; other equality (or `$in`)
/// on an indexed path reads that index. Both backends plan with it, so
/// `explain` gives the same answer on each.
public struct KeyAccess: Sendable {
    /// The filtered path.
    public let path: FieldPath
    /// The position of the index used in the list given to
    /// ``Filter/keyAccess(indexes:)``; nil for the primary key (`_id`).
    public let index: Int?
    /// The values looked up (one key each).
    public let values: [JSON]

    /// What `explain` reports for this access.
    public var plan: QueryPlan {
        index == nil
            ? QueryPlan(kind: .primaryKey(keys: values.count))
            : QueryPlan(kind: .indexLookup(path: path.description, keys: values.count))
    }

    /// The `_id`s the primary-key values name: a double with an integer
    /// value is that integer; values that cannot be an `_id` match nothing.
    public var primaryKeys: [JSON] {
        values.compactMap { v in
            switch v {
            case .int, .string: return v
            case .double(let d): return Int64(exactly: d).map(JSON.int)
            default: return nil
            }
        }
    }
}

extension Filter {
    /// The cheapest key access that serves this filter, given a collection's
    /// secondary indexes (in any order); nil means a scan. Primary key
    /// first, then unique indexes, then the fewest keys.
    public func keyAccess(indexes: [(path: FieldPath, unique: Bool)]) -> KeyAccess? {
        var options: [KeyAccess] = []
        for (path, values) in indexableEqualities() {
            if path.components == ["_id"] {
                options.append(KeyAccess(path: path, index: nil, values: values))
            } else if let i = indexes.firstIndex(where: { $0.path == path }) {
                options.append(KeyAccess(path: path, index: i, values: values))
            }
        }
        func rank(_ a: KeyAccess) -> (Int, Int) {
            (a.index.map { indexes[$0].unique ? 1 : 2 } ?? 0, a.values.count)
        }
        return options.min { rank($0) < rank($1) }
    }
}

extension Filter {
    /// Top-level fields (not `_id`) this filter requires to equal a string
    /// or a boolean, by plain equality or `$eq`, at its top or under `$and`.
    /// A document can match only if the field is that value or an array
    /// holding it, which JSON containment tests exactly for these types (no
    /// numeric or null subtleties): what a server backend can narrow its
    /// candidates by before the filter itself decides.
    public func requiredScalarFields() -> [(field: String, value: JSON)] {
        var out: [(String, JSON)] = []
        func visit(_ n: Node) {
            switch n {
            case .and(let subs): subs.forEach(visit)
            case .field(let path, let preds) where path.components.count == 1 && path.components[0] != "_id":
                for case .eq(let v) in preds {
                    switch v {
                    case .string, .bool: out.append((path.components[0], v))
                    default: break
                    }
                }
            default: break
            }
        }
        visit(root)
        return out
    }
}
