import DocumentStore
import Testing

@Suite("JSON codec")
struct JSONTests {
    // MARK: Round trips

    @Test(
        "int64 extremes round-trip exactly",
        arguments: [
            "0", "-1", "9223372036854775807", "-9223372036854775808", "1234567890123456789",
        ])
    func int64RoundTrip(_ text: String) throws {
        let v = try JSON(parsing: text)
        guard case .int = v else {
            Issue.record("\(text) parsed as \(v)")
            return
        }
        #expect(v.serialized == text)
    }

    @Test("integers beyond int64 become doubles")
    func bigIntegers() throws {
        #expect(try JSON(parsing: "9223372036854775808") == .double(9_223_372_036_854_775_808))
    }

    @Test(
        "doubles use the shortest text that round-trips",
        arguments: [
            0.1, 1.0 / 3.0, 1e300, Double.leastNonzeroMagnitude, -2.5, 1e21, 123456.789, 2.0,
        ])
    func doubleRoundTrip(_ d: Double) throws {
        let text = JSON.double(d).serialized
        #expect(try JSON(parsing: text) == .double(d))
        #expect(text == d.description)
    }

    @Test("a double stays a double")
    func doubleKind() throws {
        #expect(try JSON(parsing: "2.0") == .double(2))
        #expect(try JSON(parsing: "2e0") == .double(2))
        #expect(try JSON(parsing: "2") == .int(2))
    }

    @Test("escapes and Unicode")
    func unicode() throws {
        let v = try JSON(parsing: #""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00 ü 日本""#)
        #expect(v == .string("a\"b\\c/d\u{8}\u{c}\n\r\té😀 ü 日本"))
        // Serialization escapes only what it must, and reads back equal.
        #expect(v.serialized == #""a\"b\\c/d\b\f\n\r\té😀 ü 日本""#)
        #expect(try JSON(parsing: v.serialized) == v)
        #expect(JSON.string("\u{1}").serialized == #""\u0001""#)
    }

    @Test("objects keep key order and nest")
    func objects() throws {
        let text = #"{"z":1,"a":[true,false,null,{"k":"v"}],"m":{"n":-0.5}}"#
        #expect(try JSON(parsing: text).serialized == text)
        #expect(try JSON(parsing: " { \"a\" : [ 1 , 2 ] } \n").serialized == #"{"a":[1,2]}"#)
    }

    // MARK: Errors

    @Test(
        "invalid JSON names the byte offset",
        arguments: [
            ("", 0), ("{", 1), ("[1,]", 3), ("{\"a\" 1}", 5), ("tru", 0), ("01", 1), ("1.", 2),
            ("\"abc", 0), ("{\"a\":1}x", 7), ("\"\\x\"", 2), ("\"\\ud800\"", 7), ("-", 1), ("[1 2]", 3),
            ("1e999", 0), ("\"a\u{1}\"", 2),
        ])
    func invalid(_ text: String, _ offset: Int) {
        let e = storeError { _ = try JSON(parsing: text) }
        #expect(e?.code == .invalidJSON)
        #expect(e?.message.contains("at byte \(offset):") == true, "\(e?.message ?? "no error")")
    }

    @Test("invalid UTF-8 is an error")
    func invalidUTF8() {
        let bytes: [UInt8] = [0x22, 0x61, 0xFF, 0x22]
        let e = storeError { _ = try bytes.withUnsafeBytes { try JSON(parsing: $0) } }
        #expect(e?.code == .invalidJSON)
        #expect(e?.message.contains("UTF-8") == true)
    }

    @Test("duplicate keys are rejected with the key and offset")
    func duplicateKeys() {
        let e = storeError { _ = try JSON(parsing: #"{"a":1,"b":2,"a":3}"#) }
        #expect(e?.message == #"invalid JSON at byte 13: duplicate key "a""#)
    }

    @Test("nesting is limited to maxDepth")
    func depthLimit() throws {
        let ok = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        _ = try JSON(parsing: ok)
        let deep =
            String(repeating: "[", count: JSONParser.maxDepth + 1)
            + String(repeating: "]", count: JSONParser.maxDepth + 1)
        let e = storeError { _ = try JSON(parsing: deep) }
        #expect(e?.message == "invalid JSON at byte \(JSONParser.maxDepth): nesting deeper than \(JSONParser.maxDepth)")
    }
}
