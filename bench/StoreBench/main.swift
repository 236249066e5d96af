// The store side of bench/store-bench.sh: the same work as
// bench/lmdb_baseline.c, through DocumentStore's public API.
// Usage: store-bench DIR N LOOKUPS
import DocumentStore

#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Prints "name value" with three decimals (no Foundation needed).
func report(_ name: String, _ value: Double) {
    let milli = Int((value * 1000).rounded())
    let frac = String(milli % 1000)
    print("\(name) \(milli / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)")
}

/// Decimal digits of `v`, zero-padded to `width`, without temporary arrays
/// (the C baseline formats with snprintf; this keeps the two comparable).
func appendInt(_ v: Int, width: Int = 0, to out: inout [UInt8]) {
    var digits = 1
    var x = v
    while x >= 10 {
        x /= 10
        digits += 1
    }
    let n = max(digits, width)
    let start = out.count
    out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: n))
    out.withUnsafeMutableBufferPointer { p in
        var x = v
        var i = start + n - 1
        repeat {
            p[i] = UInt8(48 + x % 10)
            x /= 10
            i -= 1
        } while x > 0
    }
}

/// The JSON text of user `i`, formatted the way the C baseline's snprintf does.
func userDocument(_ i: Int, into out: inout [UInt8]) {
    out.removeAll(keepingCapacity: true)
    out.append(contentsOf: #"{"_id":"#.utf8)
    appendInt(i, to: &out)
    out.append(contentsOf: #","email":"user"#.utf8)
    appendInt(i, width: 7, to: &out)
    out.append(contentsOf: #"@example.com","name":"User "#.utf8)
    appendInt(i, to: &out)
    out.append(contentsOf: #"","created_at":"2026-11-26T10:00:00.000Z","flags":"#.utf8)
    appendInt(i % 16, to: &out)
    out.append(UInt8(ascii: "}"))
}

func run() throws {
    let args = CommandLine.arguments
    guard args.count >= 4, let n = Int(args[2]), let lookups = Int(args[3]) else {
        print("usage: store-bench DIR N LOOKUPS")
        exit(2)
    }
    let store = try DocumentStore(path: args[1])

    var t = now()
    try store.write { txn in
        var buf: [UInt8] = []
        for i in 0..<n {
            userDocument(i, into: &buf)
            _ = try buf.withUnsafeBytes { try txn.insert(json: $0, into: "users") }
        }
    }
    report("insert", now() - t)

    t = now()
    let (count, bytes) = try store.read { txn -> (Int, Int) in
        let c = try txn.find("users")
        var count = 0
        var bytes = 0
        while let raw = try c.nextRaw() {
            count += 1
            bytes += raw.count
        }
        return (count, bytes)
    }
    report("scan", now() - t)
    guard count == n, bytes > 0 else {
        print("scan saw \(count) documents")
        exit(1)
    }

    t = now()
    let r = try store.write {
        try $0.updateMany("users", filter: .all, update: Update(parsing: #"{"$set":{"plan":"free"}}"#))
    }
    report("update_many", now() - t)
    guard r.modified == n else {
        print("update modified \(r.modified)")
        exit(1)
    }

    t = now()
    try store.write { try $0.createIndex("users", path: "email", unique: true) }
    report("index_build", now() - t)

    t = now()
    let found = try store.read { txn -> Int in
        var seed: UInt64 = 42
        var found = 0
        var email: [UInt8] = []
        for _ in 0..<lookups {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let id = Int((seed >> 33) % UInt64(n))
            email.removeAll(keepingCapacity: true)
            email.append(contentsOf: "user".utf8)
            appendInt(id, width: 7, to: &email)
            email.append(contentsOf: "@example.com".utf8)
            let filter = try Filter(.object(JSONObject([("email", .string(String(decoding: email, as: UTF8.self)))])))
            let c = try txn.find("users", filter: filter)
            if try c.nextRaw() != nil { found += 1 }
            c.close()
        }
        return found
    }
    report("lookups", now() - t)
    guard found == lookups else {
        print("found \(found) of \(lookups)")
        exit(1)
    }
    let plan = try store.read {
        try $0.explain("users", filter: Filter(parsing: #"{"email":"user0000001@example.com"}"#))
    }
    guard case .indexLookup = plan.kind else {
        print("lookups did not use the index: \(plan)")
        exit(1)
    }

    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    report("peak_rss_mb", Double(ru.ru_maxrss) / 1024)

    // The slower paths, measured against the fast ones above in the same
    // process, in a second store so that the file size and peak RSS above
    // stay comparable with the baseline: a nested $set (no byte splice; the
    // document is rebuilt) and inserts that maintain a unique index.
    let slow = try DocumentStore(path: args[1] + "-slow")
    try slow.write { txn in
        var buf: [UInt8] = []
        for i in 0..<n {
            userDocument(i, into: &buf)
            _ = try buf.withUnsafeBytes { try txn.insert(json: $0, into: "users") }
        }
    }
    t = now()
    let nested = try slow.write {
        try $0.updateMany("users", filter: .all, update: Update(parsing: #"{"$set":{"profile.plan":"pro"}}"#))
    }
    report("update_nested", now() - t)
    guard nested.modified == n else {
        print("nested update modified \(nested.modified)")
        exit(1)
    }

    t = now()
    try slow.write { txn in
        try txn.createIndex("indexed_users", path: "email", unique: true)
        var buf: [UInt8] = []
        for i in 0..<n {
            userDocument(i, into: &buf)
            _ = try buf.withUnsafeBytes { try txn.insert(json: $0, into: "indexed_users") }
        }
    }
    report("insert_indexed", now() - t)
    let indexed = try slow.read {
        try $0.count("indexed_users", filter: Filter(parsing: #"{"email":"user0000007@example.com"}"#))
    }
    guard indexed == 1 else {
        print("indexed insert: found \(indexed) for one email")
        exit(1)
    }

}

do { try run() } catch {
    print("store-bench: \(error)")
    exit(1)
}
