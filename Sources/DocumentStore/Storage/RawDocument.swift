/// Byte-level access to a stored document without parsing it.
///
/// Stored documents are always the compact serialization of
/// ``JSONSerializer``, so a top-level field can be found by skipping values,
/// and a `$set` of a top-level field can be spliced in place. The result is
/// byte-identical to parse → modify → serialize, which the tests check.
enum RawDocument {
    /// The byte range of the value of top-level `key` (given as its
    /// serialized, quoted form), or nil if the key is absent or the bytes are
    /// not a compact object.
    static func findValue(ofQuotedKey key: UnsafeRawBufferPointer, in doc: UnsafeRawBufferPointer) -> Range<Int>? {
        let n = doc.count
        guard n >= 2, doc[0] == UInt8(ascii: "{") else { return nil }
        var i = 1
        while i < n, doc[i] == UInt8(ascii: "\"") {
            let keyStart = i
            guard let keyEnd = skipString(doc, from: i) else { return nil }
            guard keyEnd < n, doc[keyEnd] == UInt8(ascii: ":") else { return nil }
            let valueStart = keyEnd + 1
            guard let valueEnd = skipValue(doc, from: valueStart) else { return nil }
            if keyEnd - keyStart == key.count && memoryEqual(doc, keyStart, key) {
                return valueStart..<valueEnd
            }
            guard valueEnd < n else { return nil }
            if doc[valueEnd] == UInt8(ascii: "}") { return nil }
            guard doc[valueEnd] == UInt8(ascii: ",") else { return nil }
            i = valueEnd + 1
        }
        return nil
    }

    /// Writes `doc` with top-level `key` set to `value` (both serialized) into
    /// `out`. Returns false when the stored bytes already hold that value.
    static func set(
        quotedKey key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        in doc: UnsafeRawBufferPointer, into out: inout [UInt8]
    ) -> Bool {
        out.removeAll(keepingCapacity: true)
        if let r = findValue(ofQuotedKey: key, in: doc) {
            if r.count == value.count && memoryEqual(doc, r.lowerBound, value) { return false }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: doc[..<r.lowerBound]))
            out.append(contentsOf: value)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: doc[r.upperBound...]))
            return true
        }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: doc[..<(doc.count - 1)]))
        if doc.count > 2 { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: key)
        out.append(UInt8(ascii: ":"))
        out.append(contentsOf: value)
        out.append(UInt8(ascii: "}"))
        return true
    }

    @inline(__always)
    static func memoryEqual(_ doc: UnsafeRawBufferPointer, _ at: Int, _ other: UnsafeRawBufferPointer) -> Bool {
        guard at + other.count <= doc.count else { return false }
        guard let a = doc.baseAddress, let b = other.baseAddress else { return other.isEmpty }
        return memcmp(a + at, b, other.count) == 0
    }

    /// Index just past the string starting at `from` (a quote), or nil.
    @inline(__always)
    static func skipString(_ doc: UnsafeRawBufferPointer, from: Int) -> Int? {
        var i = from + 1
        let n = doc.count
        while true {
            ByteScan.skip(doc, from: &i) { w in ByteScan.equal(w, 0x22) | ByteScan.equal(w, 0x5C) }
            guard i < n else { return nil }
            let c = doc[i]
            if c == UInt8(ascii: "\"") { return i + 1 }
            i += c == UInt8(ascii: "\\") ? 2 : 1
        }
    }

    /// Index just past the compact JSON value starting at `from`, or nil.
    static func skipValue(_ doc: UnsafeRawBufferPointer, from: Int) -> Int? {
        let n = doc.count
        guard from < n else { return nil }
        let c = doc[from]
        if c == UInt8(ascii: "\"") { return skipString(doc, from: from) }
        if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
            var depth = 0
            var i = from
            while i < n {
                let d = doc[i]
                if d == UInt8(ascii: "\"") {
                    guard let e = skipString(doc, from: i) else { return nil }
                    i = e
                    continue
                }
                if d == UInt8(ascii: "{") || d == UInt8(ascii: "[") { depth += 1 }
                if d == UInt8(ascii: "}") || d == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { return i + 1 }
                }
                i += 1
            }
            return nil
        }
        var i = from
        while i < n {
            let d = doc[i]
            if d == UInt8(ascii: ",") || d == UInt8(ascii: "}") || d == UInt8(ascii: "]") { return i }
            i += 1
        }
        return i
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension UnsafeRawBufferPointer {
    /// Byte equality with `memcmp`: the generic `elementsEqual` walks byte by
    /// byte through iterators, which was 14% of a per-document rewrite.
    @inline(__always)
    package func sameBytes(as other: UnsafeRawBufferPointer) -> Bool {
        guard count == other.count else { return false }
        guard count > 0, let a = baseAddress, let b = other.baseAddress else { return true }
        return memcmp(a, b, count) == 0
    }

    @inline(__always)
    package func sameBytes(as other: [UInt8]) -> Bool { other.withUnsafeBytes { sameBytes(as: $0) } }

    /// Byte-wise (LMDB key) order with `memcmp`, for the same reason.
    @inline(__always)
    func sortsAfter(_ other: UnsafeRawBufferPointer) -> Bool {
        let n = Swift.min(count, other.count)
        if n > 0, let a = baseAddress, let b = other.baseAddress {
            let c = memcmp(a, b, n)
            if c != 0 { return c > 0 }
        }
        return count > other.count
    }
}
