#if canImport(Glibc)
import Glibc
#endif

/// This process's environment as `NAME=value` strings.
enum ProcessEnvironment {
    /// Passed to the worker as they are.
    static let workerNames: Set<String> = [
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", PluginWorker.Sandbox.switchVariable,
    ]
    /// Passed to the worker, by prefix: the locale, and the migrations' own.
    static let workerPrefixes = ["LC_", "MIGRATION_"]
    /// Passed only to a worker that connects to PostgreSQL: libpq's settings
    /// (`PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`, …) and what its TLS and
    /// Kerberos need.
    static let networkNames: Set<String> = [
        "KRB5CCNAME", "KRB5_CONFIG", "KRB5_KTNAME", "SSL_CERT_FILE", "SSL_CERT_DIR",
    ]
    static let networkPrefixes = ["PG"]

    /// The worker's environment: only the allowlist above from `parent`
    /// (no `LD_*`, nothing else the parent happens to hold), and no crash
    /// reporter: Swift's would return from a raised signal (the worker
    /// makes those fatal anyway) and can stall a crash for 30 s while it
    /// symbolicates. The parent reports the signal instead.
    static func forWorker(_ parent: [String], network: Bool) -> [String] {
        parent.filter { entry in
            let name = String(entry.prefix { $0 != "=" })
            if workerNames.contains(name) || workerPrefixes.contains(where: { name.hasPrefix($0) }) { return true }
            return network && (networkNames.contains(name) || networkPrefixes.contains { name.hasPrefix($0) })
        } + ["SWIFT_BACKTRACE=enable=no"]
    }

    static var current: [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            out.append(String(cString: entry))
            p += 1
        }
        return out
    }
}

/// Calls `body` with a NULL-terminated C array of `strings`.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
