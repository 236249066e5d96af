import Synchronization
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// What a plugin asks the dynamic loader for: its `DT_NEEDED` libraries (and
/// `DT_FILTER`/`DT_AUXILIARY` filtees, which the loader also looks up) and
/// the `DT_RUNPATH`/`DT_RPATH` directories to search. Read from the checked
/// bytes (64-bit little-endian, already validated by ``ELFCheck``).
struct ELFDependencies: Equatable {
    var needed: [String] = []
    /// The search entries as written; an empty element (`a::b`, a leading
    /// or trailing `:`) is kept, because the loader reads it as `.`.
    var searchPaths: [String] = []

    /// Why the dynamic section cannot be read: the loader would read it
    /// somehow, so a plugin whose dependencies cannot be known is refused.
    struct Malformed: Error, Equatable { var reason: String }

    /// Parses the dynamic section. A shared object without one needs nothing.
    init(_ bytes: [UInt8]) throws(Malformed) {
        func u32(_ o: Int) -> UInt32? {
            guard o >= 0, o <= bytes.count - 4 else { return nil }
            return (0..<4).reduce(0) { $0 | UInt32(bytes[o + $1]) << (8 * UInt32($1)) }
        }
        func u64(_ o: Int) -> UInt64? {
            guard o >= 0, o <= bytes.count - 8 else { return nil }
            return (0..<8).reduce(0) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) }
        }
        func small(_ v: UInt64?) -> Int? { v.flatMap { $0 <= UInt64(bytes.count) ? Int($0) : nil } }
        guard bytes.count >= 64, let phoff = small(u64(32)) else {
            throw Malformed(reason: "its program header table cannot be read")
        }
        let phnum = Int(UInt16(bytes[56]) | UInt16(bytes[57]) << 8)
        var loads: [(vaddr: UInt64, offset: UInt64, size: UInt64)] = []
        var dynamic: (offset: Int, size: Int)?
        for i in 0..<phnum {
            let ph = phoff + i * 56
            guard let type = u32(ph), let offset = u64(ph + 8), let vaddr = u64(ph + 16), let filesz = u64(ph + 32)
            else { throw Malformed(reason: "program header \(i) lies outside the file") }
            if type == 1 { loads.append((vaddr, offset, filesz)) }  // PT_LOAD
            if type == 2 {  // PT_DYNAMIC
                guard let o = small(offset), let s = small(filesz), s <= bytes.count - o else {
                    throw Malformed(reason: "its dynamic section lies outside the file")
                }
                dynamic = (o, s)
            }
        }
        guard let dynamic else { return }
        // A virtual address to a file offset, only through the loadable
        // segments: the loader reads the string table from memory it mapped.
        func fileOffset(_ vaddr: UInt64) -> Int? {
            for l in loads where vaddr >= l.vaddr && vaddr - l.vaddr < l.size {
                return small(l.offset + (vaddr - l.vaddr))
            }
            return nil
        }
        var strtab: UInt64?
        var strsz: UInt64?
        var neededOffsets: [UInt64] = []
        var pathOffsets: [UInt64] = []
        var at = dynamic.offset
        while at + 16 <= dynamic.offset + dynamic.size, let tag = u64(at), let value = u64(at + 8), tag != 0 {
            switch tag {
            case 1, 0x7fff_fffd, 0x7fff_ffff: neededOffsets.append(value)  // DT_NEEDED, DT_AUXILIARY, DT_FILTER
            case 5: strtab = value  // DT_STRTAB
            case 10: strsz = value  // DT_STRSZ
            case 15, 29: pathOffsets.append(value)  // DT_RPATH, DT_RUNPATH
            default: break
            }
            at += 16
        }
        guard !neededOffsets.isEmpty || !pathOffsets.isEmpty else { return }
        guard let strtab, let base = fileOffset(strtab) else {
            throw Malformed(reason: "its dynamic section names libraries but has no readable string table")
        }
        func string(_ offset: UInt64) throws(Malformed) -> String {
            guard offset < (strsz ?? UInt64.max), let start = small(UInt64(base) + offset), start < bytes.count,
                let nul = bytes[start...].firstIndex(of: 0)
            else { throw Malformed(reason: "a library name in its dynamic section lies outside the string table") }
            return String(decoding: bytes[start..<nul], as: UTF8.self)
        }
        for offset in neededOffsets { needed.append(try string(offset)) }
        for offset in pathOffsets {
            searchPaths += try string(offset).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }

    /// Why these dependencies could load code the checks never saw, or nil.
    ///
    /// The rule, in order (docs/security.md states it the same way):
    /// 1. A library named by path (`DT_NEEDED` with a `/`) is refused.
    /// 2. When every needed soname is in `loaded` (the libraries already in
    ///    the process that loads the plugin, such as the Swift runtime that
    ///    `migrator` brought), the dynamic loader searches nothing, so the
    ///    search directories do not matter.
    /// 3. Otherwise each `DT_RUNPATH`/`DT_RPATH` entry is judged. `$ORIGIN`
    ///    names `/proc/self/fd` under memfd loading: the bare directory is
    ///    passed over (nothing resolves there), anything below it is refused
    ///    (it is whatever directory the process has open), and any other use
    ///    is substituted and checked like an absolute entry. `$LIB`,
    ///    `$PLATFORM`, other `$` tokens, relative and empty entries are
    ///    refused. An existing directory must pass the owner and mode rule of
    ///    the migrations folder, with its ancestors, and lie outside that
    ///    folder. A directory that does not exist is judged by its nearest
    ///    existing ancestor, which must be owned by you or root and writable
    ///    by nobody else, sticky bit or not (anyone may create a directory in
    ///    `/tmp`), with safe ancestors of its own; a symbolic link there must
    ///    lead somewhere, and the would-be directory must lie outside the
    ///    migrations folder too.
    func problem(migrationsDirectory: String, loaded: Set<String>) -> String? {
        for library in needed where library.contains("/") {
            return
                "it needs the library '\(library)' by path; "
                + "name libraries by soname and install them in a system directory"
        }
        guard needed.contains(where: { !loaded.contains($0) }) else { return nil }
        for entry in searchPaths {
            if let why = Self.searchDirectoryProblem(entry, migrationsDirectory: migrationsDirectory) {
                return why
            }
        }
        return nil
    }

    /// Where `$ORIGIN` points for a plugin loaded from a sealed memfd.
    static let memfdOrigin = "/proc/self/fd"

    /// `entry` with `$ORIGIN` and `${ORIGIN}` replaced the way glibc's loader
    /// matches them (`$ORIGINX` is not `$ORIGIN`); other `$` left in place.
    static func substitutingOrigin(_ entry: String) -> String {
        var out = ""
        var rest = Substring(entry)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.hasPrefix("{ORIGIN}") {
                out += memfdOrigin
                rest = after.dropFirst(8)
            } else if after.hasPrefix("ORIGIN"),
                after.dropFirst(6).first.map({ !($0.isLetter || $0.isNumber || $0 == "_") }) ?? true
            {
                out += memfdOrigin
                rest = after.dropFirst(6)
            } else {
                out += "$"
                rest = after
            }
        }
        return out + rest
    }

    /// `path` with `.`, `..` and repeated slashes resolved as text.
    static func lexicallyNormal(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/") where c != "." {
            if c == ".." { _ = parts.popLast() } else { parts.append(c) }
        }
        return "/" + parts.joined(separator: "/")
    }

    private static func inside(_ path: String, _ directory: String) -> Bool {
        path == directory || path.hasPrefix(directory == "/" ? "/" : directory + "/")
    }

    private static func searchDirectoryProblem(_ entry: String, migrationsDirectory: String) -> String? {
        guard !entry.isEmpty else {
            return "its RUNPATH has an empty entry, which the loader reads as the current directory"
        }
        let substituted = substitutingOrigin(entry)
        if substituted.contains("$") {
            return
                "its RUNPATH entry '\(entry)' uses a substitution ($LIB, $PLATFORM or another) "
                + "whose directory cannot be checked before loading"
        }
        guard substituted.hasPrefix("/") else {
            return "its RUNPATH has the relative directory '\(entry)', which depends on the current directory"
        }
        let path = substituted == entry ? entry : lexicallyNormal(substituted)
        if path != entry {
            // Any step below /proc/self/fd passes through a descriptor of
            // the loading process, which can be any directory it has open
            // ("$ORIGIN/5/.." included); the directory itself holds only
            // descriptor numbers, so no library name resolves there.
            var walked = ""
            for c in substituted.split(separator: "/") {
                walked = lexicallyNormal(walked + "/" + c)
                if walked.hasPrefix(memfdOrigin + "/") {
                    return "its RUNPATH entry '\(entry)' goes through '\(walked)', a descriptor of the loading "
                        + "process, which can be any directory it has open"
                }
            }
            if path == memfdOrigin { return nil }
        }
        let shown = path == entry ? "'\(entry)'" : "'\(entry)' ('\(path)')"
        guard let real = PluginDirectory.realPath(path) else {
            return missingDirectoryProblem(path, shown: shown, migrationsDirectory: migrationsDirectory)
        }
        if inside(real, migrationsDirectory) {
            return "its RUNPATH directory \(shown) is inside the migrations folder, "
                + "whose files are not checked as libraries"
        }
        var st = stat()
        if stat(real, &st) == 0, let why = PluginDirectory.ownershipProblem(st) {
            return "its RUNPATH directory \(shown) \(why); anyone who can write there can replace a library it loads"
        }
        if let why = PluginDirectory.ancestorProblem(of: real + "/x", below: nil) {
            return "its RUNPATH directory \(shown) is inside \(why); "
                + "anyone who can write there can replace a library it loads"
        }
        return nil
    }

    /// A search directory that cannot be resolved: safe only if nobody but
    /// you or root can create it, which its nearest existing ancestor decides.
    private static func missingDirectoryProblem(
        _ path: String, shown: String, migrationsDirectory: String
    )
        -> String?
    {
        // Up the path as written, to the nearest entry that exists. lstat,
        // so that a link (even one to nowhere) is found as a link.
        var existing = path
        var missing: [Substring] = []
        var st = stat()
        while lstat(existing, &st) != 0 {
            let code = errno
            guard code == ENOENT || code == ENOTDIR, let slash = existing.lastIndex(of: "/"), existing != "/" else {
                return "its RUNPATH directory \(shown) cannot be examined (\(errorText(code)))"
            }
            missing.insert(existing[existing.index(after: slash)...], at: 0)
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
        let taker = "someone else could create it and plant a library the plugin loads"
        if let why = PluginDirectory.ancestorProblem(of: existing, below: nil) {
            return "its RUNPATH directory \(shown) does not exist, and it would be inside \(why): \(taker)"
        }
        guard let real = PluginDirectory.realPath(existing) else {
            return "its RUNPATH directory \(shown) does not exist, and '\(existing)' is a symbolic link "
                + "that leads nowhere: \(taker)"
        }
        if real != existing, let why = PluginDirectory.ancestorProblem(of: real, below: nil) {
            return "its RUNPATH directory \(shown) does not exist, and it would be inside \(why): \(taker)"
        }
        guard stat(real, &st) == 0 else {
            return "its RUNPATH directory \(shown) cannot be examined ('\(real)': \(errorText(errno)))"
        }
        if let why = PluginDirectory.ownershipProblem(st) {
            return "its RUNPATH directory \(shown) does not exist, and '\(real)' \(why): \(taker)"
        }
        let wouldBe = lexicallyNormal(real + "/" + missing.joined(separator: "/"))
        if inside(wouldBe, migrationsDirectory) {
            return "its RUNPATH directory \(shown) does not exist, and would be inside the migrations folder, "
                + "whose files are not checked as libraries"
        }
        return nil
    }
}

/// The sonames of the shared objects loaded in this process.
package enum LoadedLibraries {
    /// Read now (`dl_iterate_phdr`).
    static func current() -> Set<String> {
        guard let text = migrator_loaded_sonames() else { return [] }
        defer { free(text) }
        return Set(String(cString: text).split(separator: "\n").map(String.init))
    }

    private static let recorded = Mutex<Set<String>?>(nil)

    /// Records the libraries loaded when the process started, before it
    /// loaded anything on demand (name-service modules and the like): a
    /// worker started from the same executable has at least those, so the
    /// parent may judge a plugin by them. The `migrator` executable calls it
    /// first thing.
    package static func recordStartup() {
        recorded.withLock { if $0 == nil { $0 = current() } }
    }

    /// The libraries that ``recordStartup()`` saw, or none if it was not called.
    static var atStartup: Set<String> { recorded.withLock { $0 ?? [] } }
}
