import DocumentStore
import MigrationKit
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// What was read from plugin files at their last load, keyed by path and
/// valid while the file's identity (device, inode, size, mtime) is the same.
/// `status` uses it to answer without `dlopen`ing anything; loads for a run
/// use it only to skip re-hashing an unchanged file.
struct DescriptorCache {
    struct Entry {
        var identity: FileIdentity
        var plugin: LoadedPlugin
    }
    var entries: [String: Entry] = [:]

    static let fileName = "plugin-descriptors.json"

    static func load(_ path: String) -> DescriptorCache {
        var cache = DescriptorCache()
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return cache }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buf[..<n]
        }
        guard let root = (try? bytes.withUnsafeBytes { try JSON(parsing: $0) })?.objectValue,
            case .int(1)? = root["version"], root["toolchain"]?.stringValue == SwiftToolchain.current,
            let files = root["files"]?.objectValue
        else { return cache }
        for (path, value) in files {
            guard let o = value.objectValue, let e = entry(o, path: path) else { continue }
            cache.entries[path] = e
        }
        return cache
    }

    private static func entry(_ o: JSONObject, path: String) -> Entry? {
        guard let dev = o.int("device"), let ino = o.int("inode"), let size = o.int("size"),
            let mtime = o.int("mtime_ns")
        else { return nil }
        let identity = FileIdentity(
            device: UInt64(bitPattern: dev), inode: UInt64(bitPattern: ino), size: size, mtimeNanoseconds: mtime)
        guard let plugin = LoadedPlugin(descriptor: o, path: path, identity: identity, body: .descriptorOnly) else {
            return nil
        }
        return Entry(identity: identity, plugin: plugin)
    }

    /// Writes the cache atomically (temp file + rename); failures are ignored:
    /// the cache only saves time.
    func save(_ path: String) {
        var files: [(String, JSON)] = []
        for (key, e) in entries.sorted(by: { $0.key < $1.key }) {
            let identity: [(String, JSON)] = [
                ("device", .int(Int64(bitPattern: e.identity.device))),
                ("inode", .int(Int64(bitPattern: e.identity.inode))),
                ("size", .int(e.identity.size)), ("mtime_ns", .int(e.identity.mtimeNanoseconds)),
            ]
            files.append((key, .object(JSONObject(identity + e.plugin.descriptorFields))))
        }
        let doc: JSON = .object(
            JSONObject([
                ("version", .int(1)), ("toolchain", .string(SwiftToolchain.current)),
                ("files", .object(JSONObject(files))),
            ]))
        let bytes = JSONSerializer.bytes(doc)
        let tmp = path + ".tmp.\(getpid())"
        // O_EXCL | O_NOFOLLOW: never write through a link planted in the directory.
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | migrator_O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        let ok = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        close(fd)
        if !ok || rename(tmp, path) != 0 { unlink(tmp) }
    }
}

extension LoadedPlugin {
    /// The plugin's descriptors as JSON fields: what the cache stores and
    /// what a worker process reports.
    var descriptorFields: [(String, JSON)] {
        [
            ("file", .string(file)), ("sha256", .string(sha256)), ("name", .string(name)),
            ("toolchain", toolchain.map(JSON.string) ?? .null), ("abi_minor", .int(Int64(abiMinor))),
            (
                "migrations",
                .array(
                    migrations.map { m in
                        .object(
                            JSONObject([
                                ("id", .string(m.id)), ("name", .string(m.name)),
                                ("description", .string(m.description)), ("version", .string(m.version)),
                                ("checksum", m.checksum.map(JSON.string) ?? .null),
                                ("reversible", .bool(m.isReversible)),
                            ]))
                    })
            ),
        ]
    }

    /// A plugin from ``descriptorFields``; its migrations get `body`.
    init?(descriptor o: JSONObject, path: String, identity: FileIdentity, body: AvailableMigration.Body) {
        guard let sha = o["sha256"]?.stringValue, let name = o["name"]?.stringValue,
            let file = o["file"]?.stringValue, let list = o["migrations"]?.arrayValue
        else { return nil }
        var migrations: [AvailableMigration] = []
        for m in list {
            guard let m = m.objectValue, let id = m["id"]?.stringValue else { return nil }
            migrations.append(
                AvailableMigration(
                    id: id, name: m.string("name"), description: m.string("description"), version: m.string("version"),
                    checksum: m["checksum"]?.stringValue, isReversible: m["reversible"] == .bool(true),
                    origin: .plugin(file: file, sha256: sha), body: body))
        }
        self.init(
            file: file, path: path, sha256: sha, identity: identity, name: name,
            toolchain: o["toolchain"]?.stringValue,
            abiMinor: o.int("abi_minor").map { UInt32(truncatingIfNeeded: $0) } ?? 0,
            migrations: migrations)
    }
}
