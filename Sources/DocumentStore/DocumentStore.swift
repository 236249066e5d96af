import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An embedded store of JSON document collections on LMDB.
///
/// ```swift
/// let store = try DocumentStore(path: "./migrator.db")
/// try store.write { txn in
///     try txn.insert(["email": "ada@example.com"], into: "users")
/// }
/// let n = try store.read { try $0.count("users") }
/// ```
///
/// - Transactions are synchronous closures. ``write(_:)`` commits when the
///   closure returns and aborts when it throws. Work never crosses an
///   `await`, because an LMDB write transaction must end on the thread that
///   began it.
/// - One write transaction at a time: writers in other threads or processes
///   wait; a second ``write(_:)`` on the same thread throws
///   ``StoreError/Code/nestedWriteTransaction`` instead of deadlocking.
/// - Readers never block and are never blocked; each sees the last commit.
/// - Opening a directory that this process already has open shares the
///   underlying LMDB environment.
public final class DocumentStore: Sendable {
    /// How an environment is opened.
    public struct Options: Sendable {
        /// The first LMDB map size (`mdb_env_set_mapsize`). The file only grows
        /// as data is written; the map is address space, not disk.
        public var initialMapSize: Int = 1 << 30
        /// The map doubles on `MDB_MAP_FULL` up to this size.
        public var maxMapSize: Int = 1 << 40
        /// Open without writing anything, not even LMDB's lock file: for a
        /// copy no other process uses (a backup being checked).
        public var readOnly = false
        public init() {}
    }

    let env: Environment

    /// The database directory.
    public var path: String { env.path }

    /// Opens the database directory at `path`, creating it (mode 0700) if
    /// missing. Files are created with mode 0600. Stale reader slots left by
    /// killed processes are cleared (`mdb_reader_check`).
    public init(path: String, options: Options = Options()) throws(StoreError) {
        env = try Environment.open(path: path, options: options)
    }

    /// Runs `body` in a read-only snapshot transaction.
    public func read<R>(_ body: (Transaction) throws -> R) throws -> R {
        let txn = try Transaction(env: env, write: false)
        defer { txn.abort() }
        return try body(txn)
    }

    /// Runs `body` in a write transaction: commits when it returns, aborts
    /// when it throws.
    ///
    /// When the map fills up (`MDB_MAP_FULL`), the transaction is aborted,
    /// the map is doubled and `body` runs again from the start; keep side
    /// effects outside the store idempotent.
    @discardableResult
    public func write<R>(_ body: (Transaction) throws -> R) throws -> R {
        try env.enterWriter()
        while true {
            let txn = try Transaction(env: env, write: true)
            env.claimWriter()
            do {
                let result = try body(txn)
                try txn.commit()
                env.releaseWriter()
                return result
            } catch {
                let grow = txn.hitMapFull
                txn.abort()
                env.releaseWriter()
                if grow {
                    try env.grow()
                    continue
                }
                throw error
            }
        }
    }

    /// Runs `body` in a write transaction that is always rolled back, even
    /// when `body` returns: what it changed is seen only inside it (dry runs,
    /// reversibility checks). A full map is an error, never a re-run.
    public func trial<R>(_ body: (Transaction) throws -> R) throws -> R {
        try env.enterWriter()
        let txn = try Transaction(env: env, write: true)
        env.claimWriter()
        defer {
            txn.abort()
            env.releaseWriter()
        }
        return try body(txn)
    }

    /// The current LMDB map size in bytes.
    public var mapSize: Int { env.mapSize }
}

/// MongoDB ObjectId-style ids: 4 bytes of seconds, 5 random bytes per
/// process, a 3-byte counter; 24 lowercase hex characters, time-ordered.
public enum ObjectID {
    private static let random = UInt64.random(in: 0..<(1 << 40))
    private static let counter = Atomic<UInt32>(UInt32.random(in: 0..<(1 << 24)))

    /// The length of an id's text.
    static let length = 24

    /// Writes a new id's 24 hex characters at `out`; no allocation, no lock.
    static func write(into out: UnsafeMutableRawPointer) {
        // Seconds are all an id holds: the coarse clock reads a variable the
        // kernel keeps, where the precise one reads the time-stamp counter.
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        let seconds = UInt64(UInt32(truncatingIfNeeded: ts.tv_sec))
        let count = UInt64(counter.add(1, ordering: .relaxed).newValue & 0xFF_FFFF)
        // 12 bytes: seconds (4), random (5), counter (3), as two words.
        let high = seconds << 32 | random >> 8  // bytes 0-7
        let low = (random & 0xFF) << 24 | count  // bytes 8-11
        hexDigits.withUnsafeBytes { table in
            func put(_ byte: UInt64, at offset: Int) {
                let pair = table.loadUnaligned(fromByteOffset: 2 * Int(byte & 0xFF), as: UInt16.self)
                out.storeBytes(of: pair, toByteOffset: offset, as: UInt16.self)
            }
            for i in 0..<8 { put(high >> UInt64(56 - 8 * i), at: 2 * i) }
            for i in 0..<4 { put(low >> UInt64(24 - 8 * i), at: 16 + 2 * i) }
        }
    }

    /// "000102…ff": the two lowercase hex digits of every byte value.
    private static let hexDigits: [UInt8] = (0..<256).flatMap { b -> [UInt8] in
        let digits = Array("0123456789abcdef".utf8)
        return [digits[b >> 4], digits[b & 0xF]]
    }

    /// A new id as a string.
    public static func generate() -> String {
        String(unsafeUninitializedCapacity: length) { out in
            guard let base = out.baseAddress else { return 0 }
            write(into: base)
            return length
        }
    }
}
