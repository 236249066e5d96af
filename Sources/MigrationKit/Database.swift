import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// The database as a migration sees it: collections of JSON documents, with
/// MongoDB-style filters and updates, inside the migration's transaction.
///
/// Filters and updates are JSON text, e.g. `#"{"age": {"$gte": 18}}"#` and
/// `#"{"$set": {"plan": "free"}}"#`; `"{}"` matches everything. An update
/// without `$` operators replaces the document, keeping its `_id`.
///
/// Every method throws ``DatabaseError`` on failure, carrying the host's
/// message. A `Database` is valid only while the `up` or `down` it was passed
/// to is running, and only on that thread.
public protocol Database: AnyObject {
    /// Creates an empty collection; does nothing if it exists.
    func createCollection(_ name: String) throws
    /// Drops a collection with its documents and indexes; throws
    /// ``DatabaseError/Status/notFound`` if it does not exist.
    func dropCollection(_ name: String) throws
    /// Builds an index on a dotted path. Existing identical index: no-op.
    func createIndex(_ collection: String, path: String, unique: Bool) throws
    /// Drops the index on `path`.
    func dropIndex(_ collection: String, path: String) throws
    /// Inserts one JSON object; `_id` is generated when absent.
    func insert(json: String, into collection: String) throws
    /// Inserts one JSON object given as UTF-8 bytes: the fastest form, with
    /// no `String` in between (`insert_n` with a 1.1 host).
    func insert(json: UnsafeRawBufferPointer, into collection: String) throws
    /// The documents matching `filter`, in `_id` order, read lazily.
    func find(_ collection: String, filter: String) throws -> Documents
    /// Applies `update` to every matching document; returns how many matched.
    @discardableResult
    func update(_ collection: String, filter: String, update: String) throws -> UInt64
    /// Deletes every matching document; returns how many.
    @discardableResult
    func remove(_ collection: String, filter: String) throws -> UInt64
    /// Counts matching documents. A missing collection counts 0.
    func count(_ collection: String, filter: String) throws -> UInt64
    /// Writes a line to the run's log.
    func log(_ level: LogLevel, _ message: String)
    /// Reports progress of a long step (`total` 0: unknown).
    func progress(_ done: UInt64, of total: UInt64)
    /// Commits the work so far, durably, with `token` (any text, such as the
    /// last `_id` done) and goes on in a new transaction: for migrations too
    /// large for one. Such a migration is **not atomic**: after a crash the
    /// work up to the last checkpoint stays, and the next `apply` runs `up`
    /// again with ``resumeToken`` set to `token`. Every open cursor closes.
    /// Refused in dry runs and reversibility checks.
    func checkpoint(token: String) throws
    /// The token of the last checkpoint of an earlier, interrupted run of
    /// this migration (`up` resumes from it), or nil for a fresh start.
    var resumeToken: String? { get }
}

extension Database {
    /// Every document of `collection`.
    public func find(_ collection: String) throws -> Documents { try find(collection, filter: "{}") }
    /// The documents of `collection` matching `filter`, to read and, as you
    /// go, replace or delete (``Documents/replaceCurrent(with:)-(String)``,
    /// ``Documents/deleteCurrent()``). The same cursor as ``find(_:filter:)``.
    public func documents(_ collection: String, filter: String = "{}") throws -> Documents {
        try find(collection, filter: filter)
    }
    /// The number of documents in `collection`.
    public func count(_ collection: String) throws -> UInt64 { try count(collection, filter: "{}") }
    /// Builds a non-unique index.
    public func createIndex(_ collection: String, path: String) throws {
        try createIndex(collection, path: path, unique: false)
    }
    /// Logs at info level.
    public func log(_ message: String) { log(.info, message) }

    /// Inserts one JSON object given as UTF-8 bytes; see ``insert(json:into:)-(UnsafeRawBufferPointer,_)``.
    public func insert(json bytes: [UInt8], into collection: String) throws {
        try bytes.withUnsafeBytes { try insert(json: $0, into: collection) }
    }

    /// Inserts `value` encoded as JSON.
    public func insert<T: Encodable>(_ value: T, into collection: String) throws {
        try insert(json: JSONText.encode(value), into: collection)
    }
    /// The matching documents decoded as `T`, read lazily.
    public func find<T: Decodable>(
        _ collection: String, filter: String = "{}", as type: T.Type
    ) throws -> TypedDocuments<T> {
        TypedDocuments(documents: try find(collection, filter: filter))
    }
    /// Updates with Encodable filter and update values.
    @discardableResult
    public func update<F: Encodable, U: Encodable>(_ collection: String, where filter: F, _ update: U) throws -> UInt64
    {
        try self.update(collection, filter: JSONText.encode(filter), update: JSONText.encode(update))
    }
}

/// Log levels for ``Database/log(_:_:)``; the values are the ABI's.
public enum LogLevel: Int32, Sendable {
    /// Detail, shown with `--verbose`.
    case debug = 0
    /// Progress worth seeing on every run.
    case info = 1
    /// Something the operator should look at; the migration goes on.
    case warning = 2
    /// A problem the migration reports before failing.
    case error = 3
}

/// A failed database call: a status from the ABI and the host's message.
public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    /// The ABI status (`MIGRATOR_*`). A struct, so new codes never break clients.
    public struct Status: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// The operation failed (`MIGRATOR_ERROR`).
        public static let error = Status(rawValue: -1)
        /// The collection, index or document does not exist (`MIGRATOR_NOT_FOUND`).
        public static let notFound = Status(rawValue: -2)
        /// A unique index or `_id` already holds the value (`MIGRATOR_DUPLICATE_KEY`).
        public static let duplicateKey = Status(rawValue: -3)
        /// Bad input: JSON, a filter, an update or a name (`MIGRATOR_INVALID`).
        public static let invalid = Status(rawValue: -4)
        public var description: String {
            switch rawValue {
            case -1: return "error"
            case -2: return "not_found"
            case -3: return "duplicate_key"
            case -4: return "invalid"
            default: return "status \(rawValue)"
            }
        }
    }
    /// The status, as the C ABI reports it.
    public let status: Status
    /// What went wrong, naming the collection or document.
    public let message: String
    /// An error with `status` and a message.
    public init(_ status: Status, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { message }
}

/// A document read in place: its compact JSON bytes in the host's buffer,
/// valid only until the next call on the ``Documents`` that returned it.
/// Fields are found by scanning the text, without a parse or a copy;
/// ``copy()`` keeps it beyond that.
public struct DocumentView {
    /// The compact JSON bytes (valid until the cursor's next call).
    public let bytes: UnsafeRawBufferPointer

    /// The raw JSON text of the top-level field `name` (`"free"`, `42`,
    /// `{"a":1}`), or nil when the document has no such field.
    public func field(_ name: String) -> UnsafeRawBufferPointer? {
        var name = name
        return name.withUTF8 { JSONFields.value(of: UnsafeRawBufferPointer($0), in: bytes) }
    }

    /// The top-level string field `name`, unescaped when it has no escapes.
    public func string(_ name: String) -> String? {
        guard let raw = field(name), raw.count >= 2, raw.first == UInt8(ascii: "\""), !raw.contains(UInt8(ascii: "\\"))
        else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: raw.dropFirst().dropLast()), as: UTF8.self)
    }

    /// The top-level integer field `name`.
    public func int(_ name: String) -> Int? {
        field(name).flatMap { Int(String(decoding: $0, as: UTF8.self)) }
    }

    /// A copy that outlives the cursor's next call.
    public func copy() -> Document { Document(bytes: Array(bytes)) }
}

extension UnsafeRawBufferPointer {
    /// Byte equality with `memcmp`, not a generic element-by-element walk.
    func sameBytes(as other: UnsafeRawBufferPointer) -> Bool {
        guard count == other.count else { return false }
        guard count > 0, let a = baseAddress, let b = other.baseAddress else { return true }
        return memcmp(a, b, count) == 0
    }
}

/// Finds top-level fields in compact JSON text without parsing it.
enum JSONFields {
    /// The value bytes of the top-level key `key` in the object `json`.
    static func value(of key: UnsafeRawBufferPointer, in json: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var i = 1
        let n = json.count
        guard n >= 2, json[0] == UInt8(ascii: "{") else { return nil }
        while i < n, json[i] == UInt8(ascii: "\"") {
            let keyStart = i + 1
            i = endOfString(json, i)
            let keyEnd = i - 1
            guard i < n, json[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            let valueStart = i
            i = endOfValue(json, i)
            if keyEnd - keyStart == key.count,
                UnsafeRawBufferPointer(rebasing: json[keyStart..<keyEnd]).sameBytes(as: key)
            {
                return UnsafeRawBufferPointer(rebasing: json[valueStart..<i])
            }
            guard i < n, json[i] == UInt8(ascii: ",") else { return nil }
            i += 1
        }
        return nil
    }

    /// Past the closing quote of the string starting at `i`.
    private static func endOfString(_ b: UnsafeRawBufferPointer, _ start: Int) -> Int {
        var i = start + 1
        while i < b.count {
            if b[i] == UInt8(ascii: "\\") {
                i += 2
                continue
            }
            if b[i] == UInt8(ascii: "\"") { return i + 1 }
            i += 1
        }
        return b.count
    }

    /// Past the value starting at `i` (compact JSON: no white space).
    private static func endOfValue(_ b: UnsafeRawBufferPointer, _ start: Int) -> Int {
        guard start < b.count else { return b.count }
        switch b[start] {
        case UInt8(ascii: "\""): return endOfString(b, start)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var i = start
            while i < b.count {
                switch b[i] {
                case UInt8(ascii: "\""):
                    i = endOfString(b, i)
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return i + 1 }
                default: break
                }
                i += 1
            }
            return b.count
        default:
            var i = start
            while i < b.count, b[i] != UInt8(ascii: ","), b[i] != UInt8(ascii: "}") { i += 1 }
            return i
        }
    }
}

/// One document as compact JSON bytes.
public struct Document: Sendable {
    /// The compact JSON text, UTF-8.
    public let bytes: [UInt8]
    /// A document over its JSON text (UTF-8), as the store returns it.
    public init(bytes: [UInt8]) { self.bytes = bytes }
    /// The JSON text.
    public var json: String { String(decoding: bytes, as: UTF8.self) }
    /// Decodes the document as `T` with `JSONDecoder`.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(bytes))
    }
    /// The `_id` value as JSON text (`"\"abc\""` or `"42"`), ready to put
    /// into a filter: `#"{"_id": \#(doc.idJSON)}"#`. Stored documents start
    /// with `_id`, so this reads only the first field.
    public var idJSON: String? {
        let prefix = Self.idPrefix
        guard bytes.count > prefix.count, bytes.starts(with: prefix) else { return nil }
        var i = prefix.count
        if bytes[i] == UInt8(ascii: "\"") {
            i += 1
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
            guard i < bytes.count else { return nil }
            return String(decoding: bytes[prefix.count...i], as: UTF8.self)
        }
        while i < bytes.count, bytes[i] != UInt8(ascii: ","), bytes[i] != UInt8(ascii: "}") { i += 1 }
        return String(decoding: bytes[prefix.count..<i], as: UTF8.self)
    }
    private static let idPrefix = Array(#"{"_id":"#.utf8)

    /// A filter matching exactly this document: `{"_id": <id>}`.
    public var idFilter: String? { idJSON.map { #"{"_id":"# + $0 + "}" } }
}

/// A lazy, forward-only cursor over documents, in the style of GRDB's
/// `Cursor`: `while let doc = try docs.next() { … }`. Reading can fail, so it
/// is not a `Sequence`: a failure is never mistaken for the end.
public final class Documents {
    private let nextDocument: () throws -> Document?
    private let closeCursor: () -> Void
    private let replace: ((UnsafeRawBufferPointer) throws -> Void)?
    private let nextRaw: (() throws -> UnsafeRawBufferPointer?)?
    private let delete: (() throws -> Void)?
    private var closed = false

    /// A cursor reading from `next` until it returns `nil`; `close` releases
    /// the underlying cursor (called once, at the latest on deinit);
    /// `replace` and `delete` act on the document `next` returned last;
    /// `nextRaw`, when given, serves ``nextView()`` without a copy.
    public init(
        next: @escaping () throws -> Document?, close: @escaping () -> Void,
        replace: ((UnsafeRawBufferPointer) throws -> Void)? = nil,
        nextRaw: (() throws -> UnsafeRawBufferPointer?)? = nil, delete: (() throws -> Void)? = nil
    ) {
        nextDocument = next
        closeCursor = close
        self.nextRaw = nextRaw
        self.replace = replace
        self.delete = delete
    }

    /// Replaces the document ``next()`` returned last with `json` (its `_id`
    /// is kept; `json` may omit it), keeping indexes right. With a 1.1 host
    /// this is the `cursor_replace` fast path: no filter, no key search.
    /// The cursor goes on with the next document.
    ///
    ///     let users = try db.documents("users")
    ///     while let user = try users.next() {
    ///         var u = try user.decode(User.self)
    ///         u.plan = "free"
    ///         try users.replaceCurrent(with: u)
    ///     }
    public func replaceCurrent(with json: String) throws {
        var text = json
        try text.withUTF8 { try replaceCurrent(json: UnsafeRawBufferPointer($0)) }
    }

    /// Replaces the current document with JSON text given as UTF-8 bytes:
    /// the fastest form, with no `String` in between (for example the
    /// document's own ``Document/bytes`` with a field spliced in).
    public func replaceCurrent(json: UnsafeRawBufferPointer) throws {
        guard let replace else { throw DatabaseError(.invalid, "this cursor cannot replace documents") }
        try replace(json)
    }

    /// Replaces the current document with the JSON text in `bytes` (UTF-8).
    public func replaceCurrent(json bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try replaceCurrent(json: $0) }
    }

    /// Replaces the current document with `value` encoded as JSON.
    public func replaceCurrent<T: Encodable>(with value: T) throws {
        try replaceCurrent(with: String(decoding: try JSONEncoder().encode(value), as: UTF8.self))
    }

    /// The next document read in place, without copying it (``DocumentView``
    /// is valid until the next call on this cursor), or nil at the end.
    ///
    ///     let users = try db.documents("users")
    ///     var out: [UInt8] = []
    ///     while let user = try users.nextView() {
    ///         out.removeAll(keepingCapacity: true)
    ///         out += user.bytes.dropLast()
    ///         out += #","plan":"free"}"#.utf8
    ///         try users.replaceCurrent(json: out)
    ///     }
    public func nextView() throws -> DocumentView? {
        if closed { return nil }
        if let nextRaw { return try nextRaw().map(DocumentView.init(bytes:)) }
        // A cursor without the in-place form: a copy in storage this cursor owns.
        guard let doc = try nextDocument() else { return nil }
        if viewStorage.count < doc.bytes.count {
            viewStorage.deallocate()
            viewStorage = .allocate(byteCount: max(doc.bytes.count, 2 * viewStorage.count), alignment: 1)
        }
        viewStorage.copyBytes(from: doc.bytes)
        return DocumentView(bytes: UnsafeRawBufferPointer(rebasing: viewStorage[..<doc.bytes.count]))
    }
    private var viewStorage = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// Deletes the document ``next()`` returned last (`cursor_delete` with a 1.1 host).
    public func deleteCurrent() throws {
        guard let delete else { throw DatabaseError(.invalid, "this cursor cannot delete documents") }
        try delete()
    }
    deinit {
        close()
        viewStorage.deallocate()
    }

    /// The next document, or `nil` at the end.
    public func next() throws -> Document? {
        if closed { return nil }
        return try nextDocument()
    }
    /// Calls `body` with every remaining document.
    public func forEach(_ body: (Document) throws -> Void) throws {
        while let d = try next() { try body(d) }
    }
    /// Reads every remaining document into an array.
    public func all() throws -> [Document] {
        var out: [Document] = []
        while let d = try next() { out.append(d) }
        return out
    }
    /// Releases the cursor early.
    public func close() {
        if closed { return }
        closed = true
        closeCursor()
    }
}

/// ``Documents`` decoded as `T`.
public struct TypedDocuments<T: Decodable> {
    let documents: Documents
    /// The next decoded document, or `nil` at the end.
    public func next() throws -> T? { try documents.next()?.decode(T.self) }
    /// Calls `body` with every remaining decoded document.
    public func forEach(_ body: (T) throws -> Void) throws {
        while let d = try next() { try body(d) }
    }
}

/// JSON text from `Encodable` values, for filters, updates and documents.
public enum JSONText {
    /// `value` as compact JSON text with sorted keys.
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
    /// `s` as a JSON string literal, quotes included.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
