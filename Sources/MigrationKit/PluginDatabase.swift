import MigratorPluginABI

/// ``Database`` over the host's C function table: what a Swift plugin's
/// migrations talk to. Every call checks the status and turns a failure
/// into ``DatabaseError`` with the host's `last_error` text.
final class PluginDatabase: Database {
    private let host: HostTable
    private var txn: OpaquePointer?

    init(host: UnsafePointer<migrator_host_v1>, txn: OpaquePointer) {
        self.host = HostTable(host)
        self.txn = txn
    }

    /// Called when the step returns: the transaction is gone.
    func invalidate() { txn = nil }

    private func live() throws -> OpaquePointer {
        guard let txn else { throw DatabaseError(.invalid, "the Database was used after its migration step returned") }
        return txn
    }

    private func check(_ status: migrator_status, _ txn: OpaquePointer) throws {
        guard status != MIGRATOR_OK else { return }
        let message = host.last_error.flatMap { $0(txn) }.map { String(cString: $0) } ?? ""
        throw DatabaseError(
            DatabaseError.Status(rawValue: status), message.isEmpty ? "host call failed with status \(status)" : message
        )
    }

    private func function<F>(_ f: F?, _ name: String) throws -> F {
        guard let f else { throw DatabaseError(.error, "the host's function table has no '\(name)'") }
        return f
    }

    func createCollection(_ name: String) throws {
        let t = try live()
        try check(try function(host.create_collection, "create_collection")(t, name), t)
    }
    func dropCollection(_ name: String) throws {
        let t = try live()
        try check(try function(host.drop_collection, "drop_collection")(t, name), t)
    }
    func createIndex(_ collection: String, path: String, unique: Bool) throws {
        let t = try live()
        try check(try function(host.create_index, "create_index")(t, collection, path, unique ? 1 : 0), t)
    }
    func dropIndex(_ collection: String, path: String) throws {
        let t = try live()
        try check(try function(host.drop_index, "drop_index")(t, collection, path), t)
    }
    func insert(json: String, into collection: String) throws {
        let t = try live()
        try check(try function(host.insert, "insert")(t, collection, json), t)
    }
    func insert(json: UnsafeRawBufferPointer, into collection: String) throws {
        let t = try live()
        if let insertN {
            let p = json.baseAddress.map { $0.assumingMemoryBound(to: CChar.self) }
            try check(insertN(t, collection, p, json.count, nil, nil), t)
        } else {
            // A 1.0 host takes NUL-terminated text.
            try insert(json: String(decoding: json, as: UTF8.self), into: collection)
        }
    }
    /// `insert_n`, when the host has it (1.1).
    private lazy var insertN = host.insert_n
    func find(_ collection: String, filter: String) throws -> Documents {
        let t = try live()
        var cursor: OpaquePointer?
        try check(try function(host.find, "find")(t, collection, filter, &cursor), t)
        let next = try function(host.cursor_next, "cursor_next")
        let close = try function(host.cursor_close, "cursor_close")
        // The document `next` returned last: for the fallback on a 1.0 host.
        var current: Document?
        func liveCursor() throws -> (OpaquePointer, OpaquePointer) {
            guard let t = self.txn, let c = cursor else {
                throw DatabaseError(
                    .invalid, "collection '\(collection)': the cursor was used after its migration step returned")
            }
            return (t, c)
        }
        let replaceInPlace = host.cursor_replace
        let deleteInPlace = host.cursor_delete
        /// The next document's bytes in the host's buffer (valid until the next call), or nil at the end.
        func fetch() throws -> UnsafeRawBufferPointer? {
            let (t, c) = try liveCursor()
            var ptr: UnsafePointer<CChar>?
            var len = 0
            let status = next(c, &ptr, &len)
            current = nil
            if status == MIGRATOR_DONE { return nil }
            try self.check(status, t)
            return ptr.map { UnsafeRawBufferPointer(start: $0, count: len) }
        }
        return Documents(
            next: {
                guard let bytes = try fetch() else { return nil }
                let doc = Document(bytes: Array(bytes))
                current = doc
                return doc
            },
            close: { [weak self] in
                // After the step the host has closed it already.
                if self?.txn != nil, let c = cursor { _ = close(c) }
                cursor = nil
            },
            replace: { [weak self] json in
                guard let self else { return }
                let (t, c) = try liveCursor()
                if let replaceInPlace {
                    let p = json.baseAddress.map { $0.assumingMemoryBound(to: CChar.self) }
                    try self.check(replaceInPlace(c, p, json.count), t)
                } else {
                    // A 1.0 host: a whole-document update by _id.
                    guard let filter = current?.idFilter else {
                        throw DatabaseError(.invalid, "collection '\(collection)': the cursor has no current document")
                    }
                    _ = try self.update(collection, filter: filter, update: String(decoding: json, as: UTF8.self))
                }
            },
            nextRaw: {
                guard let bytes = try fetch() else { return nil }
                // Only a 1.0 host needs the copy: its fallback works by _id.
                if replaceInPlace == nil || deleteInPlace == nil { current = Document(bytes: Array(bytes)) }
                return bytes
            },
            delete: { [weak self] in
                guard let self else { return }
                let (t, c) = try liveCursor()
                if let deleteInPlace {
                    try self.check(deleteInPlace(c), t)
                } else {
                    guard let filter = current?.idFilter else {
                        throw DatabaseError(.invalid, "collection '\(collection)': the cursor has no current document")
                    }
                    _ = try self.remove(collection, filter: filter)
                    current = nil
                }
            })
    }
    func update(_ collection: String, filter: String, update: String) throws -> UInt64 {
        let t = try live()
        var n: UInt64 = 0
        try check(try function(host.update, "update")(t, collection, filter, update, &n), t)
        return n
    }
    func remove(_ collection: String, filter: String) throws -> UInt64 {
        let t = try live()
        var n: UInt64 = 0
        try check(try function(host.remove, "remove")(t, collection, filter, &n), t)
        return n
    }
    func count(_ collection: String, filter: String) throws -> UInt64 {
        let t = try live()
        var n: UInt64 = 0
        try check(try function(host.count, "count")(t, collection, filter, &n), t)
        return n
    }
    func log(_ level: LogLevel, _ message: String) {
        guard let t = txn else { return }
        _ = host.log?(t, level.rawValue, message)
    }
    func progress(_ done: UInt64, of total: UInt64) {
        guard let t = txn else { return }
        _ = host.progress?(t, done, total)
    }
    func checkpoint(token: String) throws {
        let t = try live()
        guard let checkpoint = host.checkpoint else {
            throw DatabaseError(
                .invalid, "this migrator (plugin ABI 1.0) cannot checkpoint: upgrade it to 0.4 or later")
        }
        try check(checkpoint(t, token), t)
    }

    var resumeToken: String? {
        guard let t = txn, let f = host.resume_token, let p = f(t) else { return nil }
        return String(cString: p)
    }

    func setError(_ message: String) {
        guard let t = txn else { return }
        _ = host.set_error?(t, message)
    }
}

/// The host's function table, read in place and only as far as its
/// `struct_size` reaches (CLAP's rule): a 1.0 host's table is shorter than
/// this SDK's `migrator_host_v1`, and the bytes after it are not ours to
/// read. A field beyond `struct_size` reads as nil.
@dynamicMemberLookup
struct HostTable {
    private let table: UnsafePointer<migrator_host_v1>
    /// `struct_size`, which every version has (it precedes the functions).
    private let size: Int

    init(_ table: UnsafePointer<migrator_host_v1>) {
        self.table = table
        size = Int(table.pointer(to: \.struct_size)?.pointee ?? 0)
    }

    /// The function at `field`, or nil when the host's table does not reach it.
    subscript<F>(dynamicMember field: KeyPath<migrator_host_v1, F?>) -> F? {
        guard let offset = MemoryLayout<migrator_host_v1>.offset(of: field),
            size >= offset + MemoryLayout<F?>.size,
            let pointer = table.pointer(to: field)
        else { return nil }
        return pointer.pointee
    }
}
