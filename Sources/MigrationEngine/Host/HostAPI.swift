import DocumentStore
import MigrationKit
import MigratorPluginABI
import Synchronization
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// One plugin step in progress: what a `migrator_txn *` stands for.
///
/// `@unchecked Sendable`: it sits in the shared handle registry, but only
/// the thread running the step calls into it (plugins call the host from
/// their step's thread, as the ABI requires).
final class HostStep: @unchecked Sendable {
    let db: any StepDatabase
    /// The text of the host's last failed call, NUL-terminated, owned
    /// here and handed out by `last_error` until the next failure.
    private(set) var lastError: UnsafeMutablePointer<CChar>
    /// What the plugin said with `set_error`, at most ``maxErrorBytes``.
    var pluginError: String?
    static let maxErrorBytes = 4096
    var cursorIDs: [UInt] = []
    /// Bytes handed out by `insert_n` and `get_by_id`, NUL-terminated,
    /// valid until the next host call on the step.
    private var scratch = UnsafeMutablePointer<CChar>.allocate(capacity: 1024)
    private var scratchCapacity = 1024

    /// The thread running the step: the only one allowed to call the host.
    let thread = pthread_self()
    /// The process running the step, asked of the kernel: a copy made by
    /// the raw clone syscall has the same thread handle but another pid.
    let pid = migrator_current_pid()

    init(db: any StepDatabase) {
        self.db = db
        lastError = .allocate(capacity: 1)
        lastError[0] = 0
    }
    /// The collection name the last call gave, as bytes and as a `String`:
    /// plugins name the same few collections on every call, and building
    /// the `String` each time was a tenth of an insert's cost.
    private let lastName = UnsafeMutablePointer<CChar>.allocate(capacity: maxCachedName)
    private var lastNameLength = -1
    private var lastNameString = ""
    private static let maxCachedName = 256

    /// The collection name at `p`, validated.
    func collection(_ p: UnsafePointer<CChar>?) throws(DatabaseError) -> String {
        guard let p else { throw DatabaseError(.invalid, "the collection name is NULL") }
        let n = strnlen(p, Self.maxCachedName)
        if n == lastNameLength && memcmp(p, lastName, n) == 0 { return lastNameString }
        let name = try HostAPI.string(p, "the collection name")
        if n < Self.maxCachedName {
            lastName.update(from: p, count: n)
            lastNameLength = n
            lastNameString = name
        }
        return name
    }

    deinit {
        lastError.deallocate()
        lastName.deallocate()
        scratch.deallocate()
        if let t = resumeTokenText { free(t) }
    }

    /// The resume token as C text, made once for the step.
    lazy var resumeTokenText: UnsafeMutablePointer<CChar>? = db.resumeToken.map { strdup($0) }

    /// Copies `bytes` into the scratch buffer and hands it out.
    func handOut(
        _ bytes: UnsafeRawBufferPointer, _ out: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
        _ length: UnsafeMutablePointer<Int>?
    ) {
        guard let out else { return }
        if bytes.count + 1 > scratchCapacity {
            scratch.deallocate()
            scratchCapacity = max(bytes.count + 1, 2 * scratchCapacity)
            scratch = .allocate(capacity: scratchCapacity)
        }
        if let base = bytes.baseAddress {
            UnsafeMutableRawPointer(scratch).copyMemory(from: base, byteCount: bytes.count)
        }
        scratch[bytes.count] = 0
        out.pointee = UnsafePointer(scratch)
        length?.pointee = bytes.count
    }

    func fail(_ e: DatabaseError) -> migrator_status {
        let text = e.message.utf8CString
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: text.count)
        for (i, c) in text.enumerated() { copy[i] = c }
        lastError.deallocate()
        lastError = copy
        return e.status.rawValue
    }
    var lastErrorText: String { String(cString: lastError) }
}

/// A cursor handed to a plugin. Its bytes are copied into `buffer`, which
/// the plugin may read until its next call on the cursor: stored pages can
/// move when the same transaction writes, so LMDB's own pointer is not
/// handed out. `@unchecked Sendable` for the same reason as ``HostStep``.
final class HostCursor: @unchecked Sendable {
    let cursor: any StepCursor
    /// Strong, not weak: a weak reference gives the step a side table and
    /// moves every retain of it, on every host call, to the slow path.
    /// Cursors leave the registry when their step ends, so nothing cycles.
    let step: HostStep
    var buffer: UnsafeMutablePointer<CChar>
    var capacity: Int
    init(cursor: any StepCursor, step: HostStep) {
        self.cursor = cursor
        self.step = step
        capacity = 1024
        buffer = .allocate(capacity: capacity)
    }
    deinit { buffer.deallocate() }
}

/// Handles given to plugins are numbers, never object addresses: a stale or
/// closed handle is looked up, found missing, and refused with
/// `MIGRATOR_INVALID` instead of touching freed memory.
enum HostHandles {
    struct Table {
        var next: UInt = 1
        var steps: [UInt: HostStep] = [:]
        var cursors: [UInt: HostCursor] = [:]
    }
    static let table = Mutex(Table())

    /// Whether the calling thread may use `step`'s transaction: only the
    /// step's own thread (LMDB transactions belong to their thread), and
    /// never from another process (a fork, or a raw clone), which holds a
    /// copy of the transaction.
    static func mayUse(_ step: HostStep) -> Bool {
        pthread_equal(step.thread, pthread_self()) != 0 && migrator_may_act_for(step.pid) != 0
    }

    /// A fresh handle number for `step`; numbers are never reused.
    static func register(_ step: HostStep) -> UInt { allocate { $0.steps[$1] = step } }
    /// A fresh handle number for `cursor`.
    static func register(_ cursor: HostCursor) -> UInt { allocate { $0.cursors[$1] = cursor } }

    private static func allocate(_ store: (inout Table, UInt) -> Void) -> UInt {
        table.withLock { t in
            let id = t.next
            t.next += 1
            store(&t, id)
            return id
        }
    }

    static func step(_ txn: OpaquePointer?) -> HostStep? {
        lookup(txn, \.stepID, \.step) { $0.steps[$1] }
    }
    static func cursor(_ handle: OpaquePointer?) -> HostCursor? {
        lookup(handle, \.cursorID, \.cursor) { $0.cursors[$1] }
    }

    /// The object behind `handle`: this thread's cache, else the registry.
    /// Always inlined: the key paths then fold to direct field accesses (a
    /// generic call evaluated them at run time, 15% of a fan-out).
    @inline(__always)
    private static func lookup<T: AnyObject>(
        _ handle: OpaquePointer?, _ cachedID: ReferenceWritableKeyPath<ThreadCache, UInt>,
        _ cached: ReferenceWritableKeyPath<ThreadCache, T?>, _ registry: (Table, UInt) -> T?
    ) -> T? {
        guard let handle else { return nil }
        let id = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        let cache = ThreadCache.current
        if cache[keyPath: cachedID] == id, let hit = cache[keyPath: cached] { return hit }
        let found = table.withLock { registry($0, id) }
        cache[keyPath: cachedID] = id
        cache[keyPath: cached] = found
        return found
    }

    /// The last step and cursor looked up on this thread: a plugin calls from
    /// its step's thread, so most calls skip the locked registry. A stale
    /// entry is harmless: ids are never reused, and an ended step or closed
    /// cursor refuses every call itself.
    final class ThreadCache {
        var stepID: UInt = 0
        var step: HostStep?
        var cursorID: UInt = 0
        var cursor: HostCursor?

        private static let key: pthread_key_t = {
            var key = pthread_key_t()
            pthread_key_create(&key) { p in
                if let p { Unmanaged<ThreadCache>.fromOpaque(p).release() }
            }
            return key
        }()

        static var current: ThreadCache {
            if let p = pthread_getspecific(key) { return Unmanaged<ThreadCache>.fromOpaque(p).takeUnretainedValue() }
            let c = ThreadCache()
            pthread_setspecific(key, Unmanaged.passRetained(c).toOpaque())
            return c
        }

        /// Forgets `ended` and its cursors, so they are not kept alive.
        func forget(_ ended: HostStep) {
            if step === ended {
                step = nil
                stepID = 0
            }
            if let c = cursor, c.step === ended {
                cursor = nil
                cursorID = 0
            }
        }
    }
    static func handle(_ id: UInt) -> OpaquePointer? { OpaquePointer(bitPattern: id) }
}

/// The `migrator_host_v1` table every plugin step receives.
enum HostAPI {
    /// Runs `body` for the step behind `txn`, mapping errors to statuses.
    @inline(__always)
    static func call(_ txn: OpaquePointer?, _ body: (HostStep) throws(DatabaseError) -> Void) -> migrator_status {
        guard let step = HostHandles.step(txn), HostHandles.mayUse(step) else { return MIGRATOR_INVALID }
        do {
            try body(step)
            return MIGRATOR_OK
        } catch {
            return step.fail(error)
        }
    }

    static func string(_ p: UnsafePointer<CChar>?, _ what: String) throws(DatabaseError) -> String {
        guard let p else { throw DatabaseError(.invalid, "\(what) is NULL") }
        guard let s = String(validatingCString: p) else { throw DatabaseError(.invalid, "\(what) is not valid UTF-8") }
        return s
    }

    static func bytes(_ p: UnsafePointer<CChar>?) -> UnsafeRawBufferPointer? {
        guard let p else { return nil }
        return UnsafeRawBufferPointer(start: p, count: strlen(p))
    }

    /// The table plugins get, at one address for the life of the process:
    /// a pointer a plugin keeps never dangles. `nonisolated(unsafe)`: it is
    /// written once, here, and only read after.
    nonisolated(unsafe) static let tablePointer: UnsafePointer<migrator_host_v1> = {
        let p = UnsafeMutablePointer<migrator_host_v1>.allocate(capacity: 1)
        p.initialize(to: table)
        return UnsafePointer(p)
    }()

    static let table: migrator_host_v1 = migrator_host_v1(
        abi_major: UInt32(MIGRATOR_ABI_MAJOR),
        abi_minor: UInt32(MIGRATOR_ABI_MINOR),
        struct_size: UInt32(MemoryLayout<migrator_host_v1>.size),
        create_collection: { txn, c in
            call(txn) { s throws(DatabaseError) in try s.db.run { try $0.createCollection(try s.collection(c)) } }
        },
        drop_collection: { txn, c in
            call(txn) { s throws(DatabaseError) in try s.db.run { try $0.dropCollection(try s.collection(c)) } }
        },
        create_index: { txn, c, path, unique in
            call(txn) { s throws(DatabaseError) in
                try s.db.run {
                    try $0.createIndex(
                        try s.collection(c), path: try string(path, "the index path"), unique: unique != 0)
                }
            }
        },
        drop_index: { txn, c, path in
            call(txn) { s throws(DatabaseError) in
                try s.db.run { try $0.dropIndex(try s.collection(c), path: try string(path, "the index path")) }
            }
        },
        insert: { txn, c, json in
            call(txn) { s throws(DatabaseError) in
                let name = try s.collection(c)
                guard let doc = bytes(json) else {
                    throw DatabaseError(.invalid, "insert into '\(name)': the document is NULL")
                }
                try s.db.insert(jsonBytes: doc, into: name, returningID: false)
            }
        },
        find: { txn, c, filter, out in
            call(txn) { s throws(DatabaseError) in
                let name = try s.collection(c)
                guard let out else {
                    throw DatabaseError(.invalid, "find in '\(name)': the cursor out-pointer is NULL")
                }
                out.pointee = nil
                let id = HostHandles.register(
                    HostCursor(cursor: try s.db.openCursor(name, filter: bytes(filter)), step: s))
                s.cursorIDs.append(id)
                out.pointee = HostHandles.handle(id)
            }
        },
        cursor_next: { handle, outJSON, outLen in
            guard let c = HostHandles.cursor(handle), HostHandles.mayUse(c.step) else { return MIGRATOR_INVALID }
            guard let outJSON, let outLen else { return MIGRATOR_INVALID }
            do throws(DatabaseError) {
                guard let raw = try c.cursor.nextRaw() else { return MIGRATOR_DONE }
                if raw.count + 1 > c.capacity {
                    c.buffer.deallocate()
                    c.capacity = max(raw.count + 1, 2 * c.capacity)
                    c.buffer = .allocate(capacity: c.capacity)
                }
                if let base = raw.baseAddress {
                    UnsafeMutableRawPointer(c.buffer).copyMemory(from: base, byteCount: raw.count)
                }
                c.buffer[raw.count] = 0
                outJSON.pointee = UnsafePointer(c.buffer)
                outLen.pointee = raw.count
                return MIGRATOR_OK
            } catch {
                return c.step.fail(error)
            }
        },
        cursor_close: { handle in
            guard let handle else { return MIGRATOR_OK }
            let id = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
            // Only the step's own thread may close it: closing touches LMDB.
            guard let open = HostHandles.cursor(handle), HostHandles.mayUse(open.step),
                let c = HostHandles.table.withLock({ $0.cursors.removeValue(forKey: id) })
            else {
                return MIGRATOR_INVALID
            }
            let cache = HostHandles.ThreadCache.current
            if cache.cursorID == id {
                cache.cursor = nil
                cache.cursorID = 0
            }
            c.cursor.close()
            return MIGRATOR_OK
        },
        update: { txn, c, filter, update, out in
            call(txn) { s throws(DatabaseError) in
                let name = try s.collection(c)
                guard let u = bytes(update) else {
                    throw DatabaseError(.invalid, "update of '\(name)': the update is NULL")
                }
                let n = try s.db.updateRaw(name, filter: bytes(filter), update: u)
                out?.pointee = n
            }
        },
        remove: { txn, c, filter, out in
            call(txn) { s throws(DatabaseError) in
                let n = try s.db.removeRaw(try s.collection(c), filter: bytes(filter))
                out?.pointee = n
            }
        },
        count: { txn, c, filter, out in
            call(txn) { s throws(DatabaseError) in
                let name = try s.collection(c)
                guard let out else { throw DatabaseError(.invalid, "count of '\(name)': the out-pointer is NULL") }
                out.pointee = try s.db.countRaw(name, filter: bytes(filter))
            }
        },
        log: { txn, level, message in
            call(txn) { s throws(DatabaseError) in
                let text =
                    message.map {
                        String(decoding: UnsafeRawBufferPointer(start: $0, count: strlen($0)), as: UTF8.self)
                    } ?? ""
                s.db.log(LogLevel(rawValue: min(max(level, 0), 3)) ?? .info, text)
            }
        },
        progress: { txn, done, total in
            call(txn) { s throws(DatabaseError) in s.db.progress(done, of: total) }
        },
        set_error: { txn, message in
            call(txn) { s throws(DatabaseError) in
                // Capped: a plugin's message goes into history and onto terminals.
                s.pluginError = message.map {
                    let n = strnlen($0, HostStep.maxErrorBytes + 1)
                    let text = String(
                        decoding: UnsafeRawBufferPointer(start: $0, count: min(n, HostStep.maxErrorBytes)),
                        as: UTF8.self)
                    return n > HostStep.maxErrorBytes ? text + "… (cut at \(HostStep.maxErrorBytes) bytes)" : text
                }
            }
        },
        last_error: { txn in
            guard let s = HostHandles.step(txn), HostHandles.mayUse(s) else { return nil }
            return UnsafePointer(s.lastError)
        },
        cursor_replace: { handle, json, len in
            onCursor(handle) { c throws(DatabaseError) in
                guard let json else { throw DatabaseError(.invalid, "cursor_replace: the document is NULL") }
                try c.cursor.replaceCurrent(json: UnsafeRawBufferPointer(start: json, count: len))
            }
        },
        cursor_delete: { handle in
            onCursor(handle) { c throws(DatabaseError) in try c.cursor.deleteCurrent() }
        },
        insert_n: { txn, c, json, len, outID, outIDLen in
            call(txn) { s throws(DatabaseError) in
                let name = try s.collection(c)
                guard let json else { throw DatabaseError(.invalid, "insert into '\(name)': the document is NULL") }
                let id = try s.db.insert(
                    jsonBytes: UnsafeRawBufferPointer(start: json, count: len), into: name, returningID: outID != nil)
                if outID != nil { JSONSerializer.bytes(id).withUnsafeBytes { s.handOut($0, outID, outIDLen) } }
            }
        },
        get_by_id: { txn, c, idJSON, len, outDoc, outLen in
            call(txn) { s throws(DatabaseError) in
                let name = try s.collection(c)
                guard let idJSON, let outDoc else {
                    throw DatabaseError(.invalid, "get_by_id in '\(name)': the id or the out-pointer is NULL")
                }
                outDoc.pointee = nil
                guard let doc = try s.db.getRaw(name, id: UnsafeRawBufferPointer(start: idJSON, count: len)) else {
                    let id = UnsafeRawBufferPointer(start: idJSON, count: min(len, 200))
                    throw DatabaseError(
                        .notFound,
                        "collection '\(name)' has no document with _id \(String(decoding: id, as: UTF8.self))")
                }
                s.handOut(doc, outDoc, outLen)
            }
        },
        checkpoint: { txn, token in
            call(txn) { s throws(DatabaseError) in
                try s.db.run { try $0.checkpoint(token: try string(token, "the resume token")) }
            }
        },
        resume_token: { txn in
            guard let s = HostHandles.step(txn), HostHandles.mayUse(s) else { return nil }
            return s.resumeTokenText.map { UnsafePointer($0) }
        }
    )

    /// A cursor call from the step's own thread, its errors recorded on the step.
    static func onCursor(
        _ handle: OpaquePointer?, _ body: (HostCursor) throws(DatabaseError) -> Void
    ) -> migrator_status {
        guard let c = HostHandles.cursor(handle), HostHandles.mayUse(c.step) else { return MIGRATOR_INVALID }
        do throws(DatabaseError) {
            try body(c)
            return MIGRATOR_OK
        } catch {
            return c.step.fail(error)
        }
    }
}

extension StepDatabase {
    /// Calls a `Database` method whose errors are already `DatabaseError`s.
    func run(_ body: (Self) throws -> Void) throws(DatabaseError) {
        do { try body(self) } catch let e as DatabaseError { throw e } catch {
            throw DatabaseError(.error, "\(error)")
        }
    }
}
