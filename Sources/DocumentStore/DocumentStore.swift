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
                if grow { try env.grow(); continue }
                throw error
            }
        }
    }

    /// The current LMDB map size in bytes.
    public var mapSize: Int { env.mapSize }
}

/// MongoDB ObjectId-style ids: 4 bytes of seconds, 5 random bytes per
/// process, a 3-byte counter; 24 lowercase hex characters, time-ordered.
enum ObjectID {
    private struct State { var random: UInt64 = UInt64.random(in: 0..<(1 << 40)); var counter: UInt32 = UInt32.random(in: 0..<(1 << 24)); var lastSecond: UInt32 = 0 }
    private static let state = Mutex(State())
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func generate() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let seconds = UInt32(truncatingIfNeeded: ts.tv_sec)
        let (random, counter) = state.withLock { s -> (UInt64, UInt32) in
            s.counter = (s.counter + 1) & 0xFF_FFFF
            return (s.random, s.counter)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12)
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: seconds >> UInt32(shift))) }
        for shift in stride(from: 32, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: random >> UInt64(shift))) }
        for shift in stride(from: 16, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: counter >> UInt32(shift))) }
        var out: [UInt8] = []
        out.reserveCapacity(24)
        for b in bytes { out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
