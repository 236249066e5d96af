/// Byte encodings of `_id` keys and index keys. See docs/ARCHITECTURE.md.
package enum KeyEncoding {
    static let intTag: UInt8 = 0x01
    static let stringTag: UInt8 = 0x02
    /// `_id` strings longer than this are refused: index entries carry the id
    /// as LMDB duplicate data, which is limited to 511 bytes.
    static let maxIDBytes = 255

    /// Appends the order-preserving key of an `_id`: integers (in numeric
    /// order) sort before strings (in byte order), as in MongoDB.
    /// The key bytes of an `_id` alone (no collection prefix).
    package static func idKey(_ id: JSON) throws(StoreError) -> [UInt8] {
        var out: [UInt8] = []
        try appendID(id, to: &out)
        return out
    }

    static func appendID(_ id: JSON, to out: inout [UInt8]) throws(StoreError) {
        switch id {
        case .int(let i):
            out.append(intTag)
            appendBigEndian(UInt64(bitPattern: i) ^ (1 << 63), to: &out)
        case .string(let s):
            guard s.utf8.count <= maxIDBytes else {
                throw StoreError(.invalidDocument, "_id string is \(s.utf8.count) bytes; the limit is \(maxIDBytes)")
            }
            out.append(stringTag)
            out.append(contentsOf: s.utf8)
        default:
            throw StoreError(
                .invalidDocument, "_id must be a string or an integer, not \(id.typeName) \(id.serialized)")
        }
    }

    /// Writes the key of an `_id` given as canonical JSON text (an integer
    /// of at most 18 digits, or a string without escapes) at `out`, which
    /// has room for `1 + maxIDBytes` bytes. Returns the length, or nil for
    /// any other value (or a string over the limit): the caller then takes
    /// the path that reports the error.
    static func writeCanonicalID(_ text: UnsafeRawBufferPointer, to out: UnsafeMutableRawPointer) -> Int? {
        guard let first = text.first, let base = text.baseAddress else { return nil }
        if first == UInt8(ascii: "\"") {
            let n = text.count - 2
            guard n >= 0, n <= maxIDBytes else { return nil }
            out.storeBytes(of: stringTag, as: UInt8.self)
            (out + 1).copyMemory(from: base + 1, byteCount: n)
            return 1 + n
        }
        guard first == UInt8(ascii: "-") || (first >= 48 && first <= 57) else { return nil }
        var v: Int64 = 0
        for c in text where c != UInt8(ascii: "-") { v = v * 10 + Int64(c &- 48) }
        if first == UInt8(ascii: "-") { v = -v }
        out.storeBytes(of: intTag, as: UInt8.self)
        (out + 1).storeBytes(of: (UInt64(bitPattern: v) ^ (1 << 63)).bigEndian, as: UInt64.self)
        return 9
    }

    static func decodeID(_ bytes: UnsafeRawBufferPointer) -> JSON {
        guard let tag = bytes.first else { return .null }
        if tag == intTag && bytes.count == 9 {
            var v: UInt64 = 0
            for i in 1...8 { v = v << 8 | UInt64(bytes[i]) }
            return .int(Int64(bitPattern: v ^ (1 << 63)))
        }
        return .string(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[1...]), as: UTF8.self))
    }

    static func appendBigEndian(_ v: UInt64, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
    }

    static func appendBigEndian(_ v: UInt32, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
    }

    /// Index keys longer than this are cut and end in a 16-byte hash of the
    /// whole key. Lookups re-check every candidate document, so a cut key can
    /// only cost a wasted fetch, never a wrong answer.
    static let maxValueKey = 400

    /// Appends the equality key of an indexed value. Equal values under the
    /// query language's equality (1 == 1.0) get equal keys.
    static func appendValueKey(_ v: JSON, to out: inout [UInt8]) {
        let start = out.count
        appendCanonical(v, to: &out)
        if out.count - start > maxValueKey {
            let (h1, h2) = fnv128(out[start...])
            out.removeSubrange((start + maxValueKey - 16)...)
            appendBigEndian(h1, to: &out)
            appendBigEndian(h2, to: &out)
        }
    }

    private static func appendCanonical(_ v: JSON, to out: inout [UInt8]) {
        switch v {
        case .null: out.append(0x05)
        case .bool(let b): out.append(b ? 0x31 : 0x30)
        case .int(let i):
            out.append(0x10)
            appendBigEndian(UInt64(bitPattern: i), to: &out)
        case .double(let d):
            if let i = Int64(exactly: d) {
                appendCanonical(.int(i), to: &out)
            } else {
                out.append(0x11)
                appendBigEndian(d.bitPattern, to: &out)
            }
        case .string(let s):
            out.append(0x20)
            out.append(contentsOf: s.utf8)
        case .array(let items):
            out.append(0x40)
            for item in items {
                appendCanonical(item, to: &out)
                out.append(0xFF)
            }
        case .object(let obj):
            out.append(0x50)
            for (k, item) in obj {
                out.append(contentsOf: k.utf8)
                out.append(0x00)
                appendCanonical(item, to: &out)
                out.append(0xFF)
            }
        }
    }

    static func fnv128<C: Collection>(_ bytes: C) -> (UInt64, UInt64) where C.Element == UInt8 {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325
        var b: UInt64 = 0x8422_2325_cbf2_9ce4
        for c in bytes {
            a = (a ^ UInt64(c)) &* 0x0000_0100_0000_01B3
            b = (b ^ UInt64(c ^ 0x5A)) &* 0x0000_0100_0000_01B3
        }
        return (a, b)
    }
}
