/// Recognizes JSON text that is already in the stored (canonical compact)
/// form, so inserts can store the caller's bytes without building a tree.
///
/// It accepts only a subset: no white space, strings without escapes or
/// control characters, valid UTF-8, integers in canonical form, no doubles,
/// no duplicate keys, nesting within ``JSONParser/maxDepth``. Anything else
/// returns nil and the caller takes the full parser, which also produces
/// the error messages. So this check may reject valid text, but never
/// accepts text the parser would not store byte for byte.
package enum CanonicalCheck {
    struct Result {
        /// The byte range of the top-level `_id` value, if `_id` is the first key.
        var idRange: Range<Int>?
        /// True when a top-level `_id` exists but is not the first key.
        var idElsewhere: Bool
    }

    static func check(_ b: UnsafeRawBufferPointer) -> Result? {
        guard b.count >= 2, b[0] == UInt8(ascii: "{") else { return nil }
        var i = 0
        var result = Result(idRange: nil, idElsewhere: false)
        guard skipObject(b, &i, depth: 1, top: &result), i == b.count else { return nil }
        return result
    }

    private static func skipValue(_ b: UnsafeRawBufferPointer, _ i: inout Int, depth: Int) -> Bool {
        guard i < b.count else { return false }
        switch b[i] {
        case UInt8(ascii: "{"):
            var nested = Result(idRange: nil, idElsewhere: false)
            return skipObject(b, &i, depth: depth + 1, top: &nested)
        case UInt8(ascii: "["):
            guard depth + 1 <= JSONParser.maxDepth else { return false }
            i += 1
            if i < b.count && b[i] == UInt8(ascii: "]") {
                i += 1
                return true
            }
            while true {
                guard skipValue(b, &i, depth: depth + 1), i < b.count else { return false }
                if b[i] == UInt8(ascii: "]") {
                    i += 1
                    return true
                }
                guard b[i] == UInt8(ascii: ",") else { return false }
                i += 1
            }
        case UInt8(ascii: "\""): return skipString(b, &i)
        case UInt8(ascii: "t"): return literal(b, &i, "true")
        case UInt8(ascii: "f"): return literal(b, &i, "false")
        case UInt8(ascii: "n"): return literal(b, &i, "null")
        default: return skipInteger(b, &i)
        }
    }

    /// With `top`, records where `_id` is (only meaningful for the outermost object).
    private static func skipObject(_ b: UnsafeRawBufferPointer, _ i: inout Int, depth: Int, top: inout Result) -> Bool {
        guard depth <= JSONParser.maxDepth else { return false }
        i += 1
        if i < b.count && b[i] == UInt8(ascii: "}") {
            i += 1
            return true
        }
        // Key ranges seen so far, for the duplicate check, on the stack;
        // objects with more keys take the full parser.
        return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 64) { keys in
            skipMembers(b, &i, depth: depth, top: &top, keys: keys)
        }
    }

    private static func skipMembers(
        _ b: UnsafeRawBufferPointer, _ i: inout Int, depth: Int, top: inout Result,
        keys: UnsafeMutableBufferPointer<Range<Int>>
    ) -> Bool {
        var count = 0
        while true {
            let keyStart = i
            guard i < b.count, b[i] == UInt8(ascii: "\""), skipString(b, &i) else { return false }
            let key = keyStart..<i
            guard count < keys.count else { return false }
            for k in keys[..<count]
            where k.count == key.count
                && memcmp(b.baseAddress! + k.lowerBound, b.baseAddress! + key.lowerBound, key.count) == 0
            {
                return false
            }
            keys[count] = key
            count += 1
            guard i < b.count, b[i] == UInt8(ascii: ":") else { return false }
            i += 1
            let valueStart = i
            guard skipValue(b, &i, depth: depth) else { return false }
            if depth == 1 && key.count == 5 && b[key.lowerBound + 1] == UInt8(ascii: "_")
                && b[key.lowerBound + 2] == UInt8(ascii: "i") && b[key.lowerBound + 3] == UInt8(ascii: "d")
            {
                if count == 1 { top.idRange = valueStart..<i } else { top.idElsewhere = true }
            }
            guard i < b.count else { return false }
            if b[i] == UInt8(ascii: "}") {
                i += 1
                return true
            }
            guard b[i] == UInt8(ascii: ",") else { return false }
            i += 1
        }
    }

    private static func skipString(_ b: UnsafeRawBufferPointer, _ i: inout Int) -> Bool {
        let start = i + 1
        var j = start
        var ascii = true
        while true {
            // Stop at the first '"', '\\', control byte or non-ASCII byte.
            ByteScan.skip(b, from: &j) { w in
                (w & ByteScan.highs) | ByteScan.below(w, 0x20) | ByteScan.equal(w, 0x22) | ByteScan.equal(w, 0x5C)
            }
            guard j < b.count else { return false }
            let c = b[j]
            if c == UInt8(ascii: "\"") {
                if !ascii && String(validating: UnsafeRawBufferPointer(rebasing: b[start..<j]), as: UTF8.self) == nil {
                    return false
                }
                i = j + 1
                return true
            }
            if c == UInt8(ascii: "\\") || c < 0x20 { return false }
            if c >= 0x80 { ascii = false }
            j += 1
        }
    }

    private static func literal(_ b: UnsafeRawBufferPointer, _ i: inout Int, _ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard b.count - i >= n, memcmp(b.baseAddress! + i, word.utf8Start, n) == 0 else { return false }
        i += n
        return true
    }

    /// Canonical integers only: no leading zeros, no "-0", within 18 digits
    /// (so always within Int64). Anything longer takes the full parser.
    private static func skipInteger(_ b: UnsafeRawBufferPointer, _ i: inout Int) -> Bool {
        var j = i
        if j < b.count && b[j] == UInt8(ascii: "-") { j += 1 }
        let digitsStart = j
        while j < b.count && b[j] >= 48 && b[j] <= 57 { j += 1 }
        let digits = j - digitsStart
        guard digits >= 1, digits <= 18 else { return false }
        if b[digitsStart] == 48 && (digits > 1 || digitsStart != i) { return false }
        if j < b.count, b[j] == UInt8(ascii: ".") || b[j] == UInt8(ascii: "e") || b[j] == UInt8(ascii: "E") {
            return false
        }
        i = j
        return true
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension CanonicalCheck {
    /// Writes the stored form of a replacement for the document whose `_id`
    /// is `id` into `out`, without parsing: `json` as given when it is in
    /// canonical form and carries `id` first, or `id` put first when it has
    /// no `_id`. False (nothing decided) otherwise: then parse it.
    package static func storedForm(of json: UnsafeRawBufferPointer, id: JSON, into out: inout [UInt8]) -> Bool {
        guard let shape = check(json), !shape.idElsewhere else { return false }
        let idText = JSONSerializer.bytes(id)
        out.removeAll(keepingCapacity: true)
        if let r = shape.idRange {
            guard UnsafeRawBufferPointer(rebasing: json[r]).sameBytes(as: idText) else { return false }
            out.append(contentsOf: json)
        } else {
            out.append(contentsOf: #"{"_id":"#.utf8)
            out.append(contentsOf: idText)
            if json.count > 2 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: json[1...]))
        }
        return true
    }
}
