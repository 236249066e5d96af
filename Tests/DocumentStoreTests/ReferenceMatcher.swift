import DocumentStore

/// An independent reading of the documented query semantics
/// (docs/document-store.md), written apart from `Filter` so that the model
/// test checks the store against the documentation, not against itself.
/// It covers what the model test generates: `{}`, `{"f": v}` and
/// `{"f": {"$op": v}}` for `$gt $in $exists $ne` on top-level fields.
enum ReferenceMatcher {
    enum Unsupported: Error { case filter(JSON) }

    static func matches(_ filter: JSON, _ doc: JSONObject) throws -> Bool {
        guard case .object(let clauses) = filter else { throw Unsupported.filter(filter) }
        for (field, condition) in clauses {
            let value = doc[field]
            if case .object(let ops) = condition, let (op, operand) = ops.fields.first, op.hasPrefix("$"),
                ops.fields.count == 1
            {
                switch op {
                case "$gt": if !greater(value, than: operand) { return false }
                case "$in":
                    guard case .array(let list) = operand else { throw Unsupported.filter(filter) }
                    if !list.contains(where: { equals(value, $0) }) { return false }
                case "$exists": if (value != nil) != (operand == .bool(true)) { return false }
                case "$ne": if equals(value, operand) { return false }
                default: throw Unsupported.filter(filter)
                }
            } else if !equals(value, condition) {
                return false
            }
        }
        return true
    }

    /// `{"f": x}`: the field equals x, or is an array with an element equal
    /// to x; null also matches a missing field.
    static func equals(_ value: JSON?, _ x: JSON) -> Bool {
        guard let value else { return x == .null }
        if same(value, x) { return true }
        if case .array(let items) = value { return items.contains { same($0, x) } }
        return false
    }

    /// `$gt`: the value, or an element of it, compares greater within one
    /// type (numbers with numbers, strings by UTF-8 bytes, …); null and
    /// missing values compare with nothing.
    static func greater(_ value: JSON?, than x: JSON) -> Bool {
        guard let value else { return false }
        var candidates = [value]
        if case .array(let items) = value { candidates += items }
        return candidates.contains { order($0, x).map { $0 > 0 } ?? false }
    }

    /// Deep equality; integers and doubles compare by value.
    static func same(_ a: JSON, _ b: JSON) -> Bool { order(a, b) == 0 || (a == .null && b == .null) }

    /// -1, 0, 1 within one type; nil across types (and for null).
    static func order(_ a: JSON, _ b: JSON) -> Int? {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x < y ? -1 : x == y ? 0 : 1
        case (.int(let x), .double(let y)): return sign(Double(x), y)
        case (.double(let x), .int(let y)): return sign(x, Double(y))
        case (.double(let x), .double(let y)): return sign(x, y)
        case (.string(let x), .string(let y)):
            let (p, q) = (Array(x.utf8), Array(y.utf8))
            return p == q ? 0 : p.lexicographicallyPrecedes(q) ? -1 : 1
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (x ? 1 : -1)
        case (.array(let x), .array(let y)):
            for (p, q) in zip(x, y) {
                guard let c = order(p, q) ?? rank(p, q) else { return nil }
                if c != 0 { return c }
            }
            return x.count == y.count ? 0 : x.count < y.count ? -1 : 1
        default: return nil
        }
    }

    private static func sign(_ x: Double, _ y: Double) -> Int { x < y ? -1 : x == y ? 0 : 1 }

    /// Inside arrays, elements of different types order by type:
    /// null < numbers < strings < objects < arrays < booleans.
    private static func rank(_ a: JSON, _ b: JSON) -> Int? {
        func r(_ v: JSON) -> Int {
            switch v {
            case .null: return 1
            case .int, .double: return 2
            case .string: return 3
            case .object: return 4
            case .array: return 5
            case .bool: return 6
            }
        }
        return r(a) == r(b) ? (a == b ? 0 : nil) : (r(a) < r(b) ? -1 : 1)
    }
}
