/// An RFC 8259 parser over raw UTF-8 bytes.
///
/// - Nesting deeper than ``maxDepth`` arrays/objects is an error.
/// - Duplicate keys in one object are an error: a document has one value per
///   key, and silently keeping either copy would lose data.
/// - Integers that fit in `Int64` stay integers; larger ones become doubles.
/// - Numbers whose magnitude overflows a double are an error.
/// - Strings must be valid UTF-8; `\u` escapes must not leave lone surrogates.
///
/// Every error message states the byte offset where parsing stopped.
public enum JSONParser {
    /// The deepest nesting of arrays and objects accepted.
    public static let maxDepth = 128

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(StoreError) -> JSON {
        var p = Parser(bytes: bytes)
        p.skipSpace()
        let value = try p.parseValue(depth: 0)
        p.skipSpace()
        if p.pos != p.end { throw p.error("unexpected data after the JSON value") }
        return value
    }

    public static func parse(_ text: String) throws(StoreError) -> JSON {
        try JSON(parsing: text)
    }
}

struct Parser {
    let base: UnsafePointer<UInt8>?
    var pos: Int = 0
    let end: Int

    init(bytes: UnsafeRawBufferPointer) {
        base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
        end = bytes.count
    }

    @inline(__always) func byte(_ i: Int) -> UInt8 { base.unsafelyUnwrapped[i] }

    func error(_ what: String, at offset: Int? = nil) -> StoreError {
        StoreError(.invalidJSON, "invalid JSON at byte \(offset ?? pos): \(what)")
    }

    @inline(__always) mutating func skipSpace() {
        while pos < end {
            let c = byte(pos)
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { return }
        }
    }

    mutating func parseValue(depth: Int) throws(StoreError) -> JSON {
        guard pos < end else { throw error("unexpected end of input") }
        switch byte(pos) {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character '\(printable(byte(pos)))'")
        }
    }

    mutating func literal(_ word: StaticString) throws(StoreError) {
        let n = word.utf8CodeUnitCount
        guard end - pos >= n else { throw error("unexpected end of input") }
        let w = word.utf8Start
        for i in 0..<n where byte(pos + i) != w[i] { throw error("invalid literal") }
        pos += n
    }

    mutating func parseObject(depth: Int) throws(StoreError) -> JSON {
        if depth > JSONParser.maxDepth { throw error("nesting deeper than \(JSONParser.maxDepth)") }
        pos += 1
        var fields: [JSONObject.Element] = []
        skipSpace()
        if pos < end && byte(pos) == UInt8(ascii: "}") {
            pos += 1
            return .object(JSONObject(uniqueFields: fields))
        }
        while true {
            skipSpace()
            guard pos < end else { throw error("unexpected end of input in object") }
            guard byte(pos) == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyOffset = pos
            let key = try parseString()
            for f in fields where f.key == key { throw error("duplicate key \"\(key)\"", at: keyOffset) }
            skipSpace()
            guard pos < end, byte(pos) == UInt8(ascii: ":") else { throw error("expected ':'") }
            pos += 1
            skipSpace()
            fields.append((key, try parseValue(depth: depth)))
            skipSpace()
            guard pos < end else { throw error("unexpected end of input in object") }
            let c = byte(pos)
            pos += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "}") { return .object(JSONObject(uniqueFields: fields)) }
            pos -= 1
            throw error("expected ',' or '}'")
        }
    }

    mutating func parseArray(depth: Int) throws(StoreError) -> JSON {
        if depth > JSONParser.maxDepth { throw error("nesting deeper than \(JSONParser.maxDepth)") }
        pos += 1
        var items: [JSON] = []
        skipSpace()
        if pos < end && byte(pos) == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
        }
        while true {
            skipSpace()
            items.append(try parseValue(depth: depth))
            skipSpace()
            guard pos < end else { throw error("unexpected end of input in array") }
            let c = byte(pos)
            pos += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "]") { return .array(items) }
            pos -= 1
            throw error("expected ',' or ']'")
        }
    }

    /// Parses a string starting at the opening quote.
    mutating func parseString() throws(StoreError) -> String {
        let start = pos
        pos += 1
        let contentStart = pos
        // Fast path: no escapes.
        while pos < end {
            let c = byte(pos)
            if c == UInt8(ascii: "\"") {
                let s = try makeString(from: contentStart, to: pos, stringStart: start)
                pos += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("control character in string") }
            pos += 1
        }
        guard pos < end else { throw error("unterminated string", at: start) }
        var buf: [UInt8] = []
        buf.reserveCapacity(pos - contentStart + 16)
        for i in contentStart..<pos { buf.append(byte(i)) }
        while pos < end {
            let c = byte(pos)
            if c == UInt8(ascii: "\"") {
                pos += 1
                guard let s = String(validating: buf, as: UTF8.self) else {
                    throw error("string is not valid UTF-8", at: start)
                }
                return s
            }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") {
                buf.append(c)
                pos += 1
                continue
            }
            pos += 1
            guard pos < end else { break }
            let e = byte(pos)
            pos += 1
            switch e {
            case UInt8(ascii: "\""): buf.append(0x22)
            case UInt8(ascii: "\\"): buf.append(0x5C)
            case UInt8(ascii: "/"): buf.append(0x2F)
            case UInt8(ascii: "b"): buf.append(0x08)
            case UInt8(ascii: "f"): buf.append(0x0C)
            case UInt8(ascii: "n"): buf.append(0x0A)
            case UInt8(ascii: "r"): buf.append(0x0D)
            case UInt8(ascii: "t"): buf.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard end - pos >= 6, byte(pos) == UInt8(ascii: "\\"), byte(pos + 1) == UInt8(ascii: "u") else {
                        throw error("lone high surrogate in \\u escape")
                    }
                    pos += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw error("invalid low surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw error("lone low surrogate in \\u escape")
                }
                appendUTF8(scalar, to: &buf)
            default:
                pos -= 1
                throw error("invalid escape '\\\(printable(e))'")
            }
        }
        throw error("unterminated string", at: start)
    }

    func makeString(from a: Int, to b: Int, stringStart: Int) throws(StoreError) -> String {
        let slice = UnsafeBufferPointer(start: base.unsafelyUnwrapped + a, count: b - a)
        // ASCII needs no validation, and is the common case.
        var ascii = true
        for c in slice where c >= 0x80 {
            ascii = false
            break
        }
        if ascii { return String(decoding: slice, as: UTF8.self) }
        guard let s = String(validating: slice, as: UTF8.self) else {
            throw error("string is not valid UTF-8", at: stringStart)
        }
        return s
    }

    mutating func hex4() throws(StoreError) -> UInt32 {
        guard end - pos >= 4 else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = byte(pos)
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 87)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 55)
            default: throw error("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    mutating func parseNumber() throws(StoreError) -> JSON {
        let start = pos
        var negative = false
        if byte(pos) == UInt8(ascii: "-") {
            negative = true
            pos += 1
        }
        guard pos < end, isDigit(byte(pos)) else { throw error("expected a digit") }
        let intStart = pos
        if byte(pos) == UInt8(ascii: "0") {
            pos += 1
            if pos < end && isDigit(byte(pos)) { throw error("leading zero in number") }
        } else {
            while pos < end && isDigit(byte(pos)) { pos += 1 }
        }
        let intEnd = pos
        var isInteger = true
        if pos < end && byte(pos) == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard pos < end, isDigit(byte(pos)) else { throw error("expected a digit after '.'") }
            while pos < end && isDigit(byte(pos)) { pos += 1 }
        }
        if pos < end && (byte(pos) == UInt8(ascii: "e") || byte(pos) == UInt8(ascii: "E")) {
            isInteger = false
            pos += 1
            if pos < end && (byte(pos) == UInt8(ascii: "+") || byte(pos) == UInt8(ascii: "-")) { pos += 1 }
            guard pos < end, isDigit(byte(pos)) else { throw error("expected a digit in exponent") }
            while pos < end && isDigit(byte(pos)) { pos += 1 }
        }
        if isInteger {
            // Accumulate negatively so that Int64.min parses.
            var v: Int64 = 0
            var overflow = false
            for i in intStart..<intEnd {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.subtractingReportingOverflow(Int64(byte(i) - 48))
                if o1 || o2 {
                    overflow = true
                    break
                }
                v = s
            }
            if !overflow {
                if negative { return .int(v) }
                if v != Int64.min { return .int(-v) }
            }
        }
        let text = String(
            decoding: UnsafeBufferPointer(start: base.unsafelyUnwrapped + start, count: pos - start), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { throw error("number out of range", at: start) }
        return .double(d)
    }

    @inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
}

func printable(_ c: UInt8) -> String {
    c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
}

func appendUTF8(_ scalar: UInt32, to buf: inout [UInt8]) {
    switch scalar {
    case 0..<0x80: buf.append(UInt8(scalar))
    case 0x80..<0x800:
        buf.append(UInt8(0xC0 | (scalar >> 6)))
        buf.append(UInt8(0x80 | (scalar & 0x3F)))
    case 0x800..<0x10000:
        buf.append(UInt8(0xE0 | (scalar >> 12)))
        buf.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        buf.append(UInt8(0x80 | (scalar & 0x3F)))
    default:
        buf.append(UInt8(0xF0 | (scalar >> 18)))
        buf.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        buf.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        buf.append(UInt8(0x80 | (scalar & 0x3F)))
    }
}
