/// A JSON value as the store sees it.
///
/// Integers and doubles are kept apart so that an `int64` written is the
/// `int64` read back. Objects keep their keys in insertion order: documents
/// round-trip byte for byte, and object equality is order-sensitive, as in
/// MongoDB.
public enum JSON: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    /// Parses one JSON text (RFC 8259). See ``JSONParser`` for limits.
    public init(parsing text: String) throws(StoreError) {
        self = try Array(text.utf8).bytes { b throws(StoreError) in try JSONParser.parse(b) }
    }

    /// Parses one JSON text from raw UTF-8 bytes.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(StoreError) {
        self = try JSONParser.parse(bytes)
    }

    /// Compact, canonical serialization: no insignificant white space,
    /// shortest round-trip doubles, minimal escapes.
    public var serialized: String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        JSONSerializer.write(self, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The value as a double if it is a number of either kind.
    public var numberValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// How many arrays and objects are nested here (a scalar is 0, `{}` is
    /// 1), as ``JSONParser/maxDepth`` counts them.
    public var nestingDepth: Int {
        switch self {
        case .object(let o): return 1 + (o.fields.lazy.map(\.value.nestingDepth).max() ?? 0)
        case .array(let a): return 1 + (a.lazy.map(\.nestingDepth).max() ?? 0)
        default: return 0
        }
    }

    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// A JSON object whose keys keep their order. Keys are unique.
public struct JSONObject: Sendable, Hashable, Sequence {
    public typealias Element = (key: String, value: JSON)
    public private(set) var fields: [Element]

    public init() { fields = [] }

    /// Builds an object from pairs; a later duplicate key replaces the earlier value.
    public init(_ pairs: [(String, JSON)]) {
        fields = []
        fields.reserveCapacity(pairs.count)
        for (k, v) in pairs { self[k] = v }
    }

    init(uniqueFields: [Element]) { fields = uniqueFields }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }
    public var keys: [String] { fields.map(\.key) }

    public func makeIterator() -> IndexingIterator<[Element]> { fields.makeIterator() }

    public func index(forKey key: String) -> Int? {
        fields.firstIndex { $0.key == key }
    }

    /// Reading returns nil for a missing key; assigning nil removes the key;
    /// assigning to a new key appends it.
    public subscript(key: String) -> JSON? {
        get {
            for f in fields where f.key == key { return f.value }
            return nil
        }
        set {
            if let i = index(forKey: key) {
                if let v = newValue { fields[i].value = v } else { fields.remove(at: i) }
            } else if let v = newValue {
                fields.append((key, v))
            }
        }
    }

    /// Inserts a key first (used to place `_id` at the front of a document).
    public mutating func prepend(_ key: String, _ value: JSON) {
        fields.insert((key, value), at: 0)
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        guard a.fields.count == b.fields.count else { return false }
        for (x, y) in zip(a.fields, b.fields) where x.key != y.key || x.value != y.value { return false }
        return true
    }

    public func hash(into h: inout Hasher) {
        h.combine(fields.count)
        for f in fields {
            h.combine(f.key)
            h.combine(f.value)
        }
    }
}

// No ExpressibleByNilLiteral: with `JSON?` slots, `nil` must mean absent, never null.
extension JSON: ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(integerLiteral v: Int64) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(stringLiteral v: String) { self = .string(v) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) { self = .object(JSONObject(elements)) }
}

extension JSON: CustomStringConvertible {
    public var description: String { serialized }
}
