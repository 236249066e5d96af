/// Paths, equality and ordering shared by filters, updates, indexes and sort.

/// A dotted path such as `address.city`, split once.
public struct FieldPath: Sendable, Hashable, CustomStringConvertible {
    public let components: [String]
    public var description: String { components.joined(separator: ".") }

    /// Validates a dotted path: no empty component, no component starting with `$`.
    public init(_ dotted: String, for code: StoreError.Code = .invalidName) throws(StoreError) {
        guard !dotted.isEmpty, dotted.utf8.count <= 1024 else {
            throw StoreError(code, "field path \"\(dotted.prefix(40))\" must be 1 to 1024 bytes")
        }
        let parts = dotted.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        for p in parts where p.isEmpty || p.hasPrefix("$") {
            throw StoreError(code, "field path \"\(dotted)\" has an empty or '$' component")
        }
        components = parts
    }

    /// A path from components known to be valid.
    init(trusted components: [String]) { self.components = components }

    /// Every value the path reaches, MongoDB style: an array met on the way
    /// fans out over its object elements, and a numeric component indexes it.
    func values(in doc: JSON) -> [JSON] { lookup(in: doc).values }

    /// The values the path reaches, and whether it is *missing* somewhere:
    /// a document on the way lacks the next key, or the path runs into a
    /// value that is not a document or array (`a.b` where `a` is 5 or null).
    /// A missing path matches `null` in filters, as in MongoDB. Array
    /// elements that are not documents are not missing: `{"a.b": null}`
    /// does not match `{"a": [1, 2]}` or `{"a": []}`, and neither does an
    /// index past an array's end (docs/document-store.md, "null and missing").
    func lookup(in doc: JSON) -> (values: [JSON], missing: Bool) {
        var out: [JSON] = []
        var missing = false
        Self.collect(doc, components[...], into: &out, missing: &missing)
        return (out, missing)
    }

    private static func collect(_ v: JSON, _ comps: ArraySlice<String>, into out: inout [JSON], missing: inout Bool) {
        guard let head = comps.first else {
            out.append(v)
            return
        }
        switch v {
        case .object(let o):
            if let child = o[head] {
                collect(child, comps.dropFirst(), into: &out, missing: &missing)
            } else {
                missing = true
            }
        case .array(let items):
            if let i = Int(head), i >= 0, i < items.count {
                collect(items[i], comps.dropFirst(), into: &out, missing: &missing)
            }
            for item in items {
                if case .object = item { collect(item, comps, into: &out, missing: &missing) }
            }
        default:
            missing = true
        }
    }

    /// True when one path is a prefix of the other (or they are equal):
    /// changing one may change the other.
    func overlaps(_ other: FieldPath) -> Bool {
        let n = min(components.count, other.components.count)
        return components[..<n] == other.components[..<n]
    }
}

/// MongoDB-style value semantics.
enum Values {
    /// Equality where 1 == 1.0 (also inside arrays and objects). Object keys
    /// must be in the same order, as in MongoDB.
    static func equal(_ a: JSON, _ b: JSON) -> Bool {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)):
            return Int64(exactly: y) == x
        case (.array(let x), .array(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.object(let x), .object(let y)):
            guard x.count == y.count else { return false }
            return zip(x.fields, y.fields).allSatisfy { $0.key == $1.key && equal($0.value, $1.value) }
        default:
            return a == b
        }
    }

    /// The BSON-like type order used by sort: null < numbers < strings <
    /// objects < arrays < booleans.
    static func typeRank(_ v: JSON) -> Int {
        switch v {
        case .null: return 1
        case .int, .double: return 2
        case .string: return 3
        case .object: return 4
        case .array: return 5
        case .bool: return 6
        }
    }

    /// A total order for sorting.
    static func compare(_ a: JSON, _ b: JSON) -> Int {
        let ra = typeRank(a)
        let rb = typeRank(b)
        if ra != rb { return ra < rb ? -1 : 1 }
        switch (a, b) {
        case (.int(let x), .int(let y)): return x < y ? -1 : (x == y ? 0 : 1)
        case (.string(let x), .string(let y)):
            // Byte order of UTF-8, which is also code point order.
            return x.utf8.lexicographicallyPrecedes(y.utf8) ? -1 : (x == y ? 0 : 1)
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (x ? 1 : -1)
        case (.array(let x), .array(let y)):
            for (p, q) in zip(x, y) {
                let c = compare(p, q)
                if c != 0 { return c }
            }
            return x.count < y.count ? -1 : (x.count == y.count ? 0 : 1)
        case (.object(let x), .object(let y)):
            for (p, q) in zip(x.fields, y.fields) {
                if p.key != q.key { return p.key.utf8.lexicographicallyPrecedes(q.key.utf8) ? -1 : 1 }
                let c = compare(p.value, q.value)
                if c != 0 { return c }
            }
            return x.count < y.count ? -1 : (x.count == y.count ? 0 : 1)
        default:
            if let x = a.numberValue, let y = b.numberValue {
                return x < y ? -1 : (x == y ? 0 : 1)
            }
            return 0
        }
    }

    /// Comparison for `$gt` and friends: only within one type bracket, so
    /// `{"age": {"$gt": 5}}` never matches a string. Null compares equal to
    /// null, as in MongoDB: `{"x": {"$gte": null}}` and `$lte` match an `x`
    /// that is null (or an array holding null), `$gt`/`$lt` never do, and a
    /// missing `x` matches none of them (unlike `{"x": null}`).
    static func comparable(_ a: JSON, _ b: JSON) -> Bool {
        typeRank(a) == typeRank(b)
    }
}
