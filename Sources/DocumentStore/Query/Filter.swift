/// A compiled MongoDB-style filter. See docs/document-store.md.
///
/// Compile once, evaluate many times. An unknown operator or malformed
/// filter is an error at compile time, never "matches nothing".
public struct Filter: Sendable {
    indirect enum Node: Sendable {
        case all
        case and([Node])
        case or([Node])
        case field(FieldPath, [Predicate])
    }

    indirect enum Predicate: Sendable {
        case eq(JSON)
        case ne(JSON)
        case gt(JSON)
        case gte(JSON)
        case lt(JSON)
        case lte(JSON)
        case `in`([JSON])
        case nin([JSON])
        case exists(Bool)
        case not([Predicate])
    }

    let root: Node

    /// The filter that matches every document (`{}`).
    public static let all = Filter(root: .all)

    init(root: Node) { self.root = root }

    /// Compiles a filter document.
    public init(_ json: JSON) throws(StoreError) {
        guard case .object(let obj) = json else {
            throw StoreError(.invalidFilter, "invalid filter: expected an object, got \(json.typeName)")
        }
        root = try Self.compile(obj)
    }

    /// Parses and compiles filter text such as `{"age": {"$gt": 30}}`.
    public init(parsing text: String) throws(StoreError) {
        let json: JSON
        do { json = try JSON(parsing: text) } catch {
            throw StoreError(.invalidFilter, "invalid filter: \(error.message)")
        }
        try self.init(json)
    }

    /// A filter on `_id` alone: `{"_id": v}`, without compiling JSON text.
    public static func idEquals(_ value: JSON) -> Filter {
        Filter(root: .field(idPath, [.eq(value)]))
    }
    static let idPath = FieldPath(trusted: ["_id"])

    /// The `_id` of a `{"_id": v}` filter with an integer or string `v`:
    /// such a filter matches at most the one document with that key.
    public var singlePrimaryKey: JSON? {
        var node = root
        if case .and(let subs) = node, subs.count == 1 { node = subs[0] }
        guard case .field(let path, let preds) = node, preds.count == 1, path.components.count == 1,
            path.components[0] == "_id", case .eq(let v) = preds[0]
        else { return nil }
        switch v {
        case .int, .string: return v
        default: return nil
        }
    }

    /// True when the filter is only `_id` equality (or `$in`) on integers or
    /// strings: a document found by its primary key matches without being read.
    var isPrimaryKeyExact: Bool {
        func scalar(_ v: JSON) -> Bool {
            switch v {
            case .int, .string: return true
            default: return false
            }
        }
        var node = root
        if case .and(let subs) = node, subs.count == 1 { node = subs[0] }
        guard case .field(let path, let preds) = node, path.components == ["_id"], preds.count == 1 else {
            return false
        }
        switch preds[0] {
        case .eq(let v): return scalar(v)
        case .in(let list): return list.allSatisfy(scalar)
        default: return false
        }
    }

    /// True for `{}`: every document matches without being read.
    public var matchesEverything: Bool {
        if case .all = root { return true }
        return false
    }

    static func compile(_ obj: JSONObject) throws(StoreError) -> Node {
        var nodes: [Node] = []
        for (key, value) in obj {
            if key.hasPrefix("$") {
                switch key {
                case "$and", "$or":
                    guard case .array(let items) = value, !items.isEmpty else {
                        throw StoreError(.invalidFilter, "invalid filter: \(key) needs a non-empty array of filters")
                    }
                    var subs: [Node] = []
                    for item in items {
                        guard case .object(let o) = item else {
                            throw StoreError(
                                .invalidFilter, "invalid filter: every element of \(key) must be an object")
                        }
                        subs.append(try compile(o))
                    }
                    nodes.append(key == "$and" ? .and(subs) : .or(subs))
                default:
                    throw StoreError(.invalidFilter, "invalid filter: unknown top-level operator \(key)")
                }
            } else {
                let path = try FieldPath(key, for: .invalidFilter)
                nodes.append(.field(path, try compilePredicates(value, path: key)))
            }
        }
        if nodes.isEmpty { return .all }
        return nodes.count == 1 ? nodes[0] : .and(nodes)
    }

    static func isOperatorObject(_ v: JSON) -> Bool {
        if case .object(let o) = v, let first = o.fields.first { return first.key.hasPrefix("$") }
        return false
    }

    static func compilePredicates(_ value: JSON, path: String) throws(StoreError) -> [Predicate] {
        guard isOperatorObject(value), case .object(let ops) = value else { return [.eq(value)] }
        var preds: [Predicate] = []
        for (op, arg) in ops {
            func list() throws(StoreError) -> [JSON] {
                guard case .array(let items) = arg else {
                    throw StoreError(.invalidFilter, "invalid filter: \(op) on \"\(path)\" needs an array")
                }
                return items
            }
            switch op {
            case "$eq": preds.append(.eq(arg))
            case "$ne": preds.append(.ne(arg))
            case "$gt": preds.append(.gt(arg))
            case "$gte": preds.append(.gte(arg))
            case "$lt": preds.append(.lt(arg))
            case "$lte": preds.append(.lte(arg))
            case "$in": preds.append(.in(try list()))
            case "$nin": preds.append(.nin(try list()))
            case "$exists":
                switch arg {
                case .bool(let b): preds.append(.exists(b))
                case .int(let i): preds.append(.exists(i != 0))
                default: throw StoreError(.invalidFilter, "invalid filter: $exists on \"\(path)\" needs true or false")
                }
            case "$not":
                guard isOperatorObject(arg) else {
                    throw StoreError(
                        .invalidFilter,
                        "invalid filter: $not on \"\(path)\" needs an operator object such as {\"$gt\": 1}")
                }
                preds.append(.not(try compilePredicates(arg, path: path)))
            default:
                if !op.hasPrefix("$") {
                    throw StoreError(
                        .invalidFilter,
                        "invalid filter: the value for \"\(path)\" mixes operators and the field \"\(op)\"")
                }
                throw StoreError(.invalidFilter, "invalid filter: unknown operator \(op) on \"\(path)\"")
            }
        }
        return preds
    }

    /// Evaluates the filter against a document.
    public func matches(_ doc: JSON) -> Bool { Self.eval(root, doc) }

    static func eval(_ node: Node, _ doc: JSON) -> Bool {
        switch node {
        case .all: return true
        case .and(let subs): return subs.allSatisfy { eval($0, doc) }
        case .or(let subs): return subs.contains { eval($0, doc) }
        case .field(let path, let preds):
            let (values, missing) = path.lookup(in: doc)
            return preds.allSatisfy { test($0, values, missing: missing) }
        }
    }

    static func test(_ p: Predicate, _ values: [JSON], missing: Bool) -> Bool {
        switch p {
        case .eq(let v): return equalsAny(values, v, missing: missing)
        case .ne(let v): return !equalsAny(values, v, missing: missing)
        case .in(let list): return list.contains { equalsAny(values, $0, missing: missing) }
        case .nin(let list): return !list.contains { equalsAny(values, $0, missing: missing) }
        case .exists(let want): return values.isEmpty != want
        case .not(let preds): return !preds.allSatisfy { test($0, values, missing: missing) }
        case .gt(let v): return anyCompares(values, v) { $0 > 0 }
        case .gte(let v): return anyCompares(values, v) { $0 >= 0 }
        case .lt(let v): return anyCompares(values, v) { $0 < 0 }
        case .lte(let v): return anyCompares(values, v) { $0 <= 0 }
        }
    }

    /// `{"a": v}` matches when a value at the path equals v, or is an array
    /// with an element equal to v; `{"a": null}` also matches a path that is
    /// missing (``FieldPath/lookup(in:)``).
    static func equalsAny(_ values: [JSON], _ v: JSON, missing: Bool) -> Bool {
        if missing && v == .null { return true }
        for c in values {
            if Values.equal(c, v) { return true }
            if case .array(let items) = c, items.contains(where: { Values.equal($0, v) }) { return true }
        }
        return false
    }

    static func anyCompares(_ values: [JSON], _ v: JSON, _ ok: (Int) -> Bool) -> Bool {
        for c in values {
            if Values.comparable(c, v) && ok(Values.compare(c, v)) { return true }
            if case .array(let items) = c {
                for e in items where Values.comparable(e, v) && ok(Values.compare(e, v)) { return true }
            }
        }
        return false
    }

    /// Equality constraints an index can serve: top-level (or `$and`)
    /// `{"path": v}`, `{"path": {"$eq": v}}` and `{"path": {"$in": [...]}}`.
    /// Null values are left out: the index does not hold missing fields.
    /// A lower bound on `_id` that every match satisfies (`$gt`/`$gte` at the
    /// top level, alone or under `$and`), as an integer or string: a scan
    /// may start there. (Comparisons bracket by type, so nothing before it
    /// in key order can match.)
    func idLowerBound() -> (value: JSON, inclusive: Bool)? {
        var best: (JSON, Bool)?
        func visit(_ n: Node) {
            switch n {
            case .and(let subs): subs.forEach(visit)
            case .field(let path, let preds) where path.components == ["_id"]:
                for p in preds {
                    var bound: (JSON, Bool)?
                    switch p {
                    case .gt(let v): bound = (v, false)
                    case .gte(let v): bound = (v, true)
                    default: break
                    }
                    guard var (v, inclusive) = bound else { continue }
                    if case .double(let d) = v {
                        // 2.5 < _id means 3 <= _id for integer keys; other numbers are kept as they are.
                        guard d.isFinite, abs(d) < 9e18 else { continue }
                        let r = d.rounded(.down)
                        v = .int(Int64(r))
                        if r != d { inclusive = false }
                    }
                    switch v {
                    case .int, .string: if best == nil { best = (v, inclusive) }
                    default: break
                    }
                }
            default: break
            }
        }
        visit(root)
        return best
    }

    func indexableEqualities() -> [(path: FieldPath, values: [JSON])] {
        var out: [(FieldPath, [JSON])] = []
        func visit(_ n: Node) {
            switch n {
            case .and(let subs): subs.forEach(visit)
            case .field(let path, let preds):
                for p in preds {
                    switch p {
                    case .eq(let v) where v != .null: out.append((path, [v]))
                    case .in(let list) where !list.contains(.null): out.append((path, list))
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
