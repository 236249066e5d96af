import Synchronization
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// What a plugin asks the dynamic loader for: its `DT_NEEDED` libraries and
/// the `DT_RUNPATH`/`DT_RPATH` directories to search. Read from the checked
/// bytes (64-bit little-endian, already validated by ``ELFCheck``).
struct ELFDependencies: Equatable {
    var needed: [String] = []
    var searchPaths: [String] = []

    /// Parses the dynamic section; nil if there is none or it is malformed.
    init?(_ bytes: [UInt8]) {
        func u32(_ o: Int) -> UInt32? {
            guard o >= 0, o + 4 <= bytes.count else { return nil }
            return (0..<4).reduce(0) { $0 | UInt32(bytes[o + $1]) << (8 * UInt32($1)) }
        }
        func u64(_ o: Int) -> UInt64? {
            guard o >= 0, o + 8 <= bytes.count else { return nil }
            return (0..<8).reduce(0) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) }
        }
        guard let phoff = u64(32), bytes.count >= 64 else { return nil }
        let phnum = Int(UInt16(bytes[56]) | UInt16(bytes[57]) << 8)
        var loads: [(vaddr: UInt64, offset: UInt64, size: UInt64)] = []
        var dynamic: (offset: UInt64, size: UInt64)?
        for i in 0..<phnum {
            let ph = Int(phoff) + i * 56
            guard let type = u32(ph), let offset = u64(ph + 8), let vaddr = u64(ph + 16), let filesz = u64(ph + 32)
            else { return nil }
            if type == 1 { loads.append((vaddr, offset, filesz)) }  // PT_LOAD
            if type == 2 { dynamic = (offset, filesz) }  // PT_DYNAMIC
        }
        guard let dynamic else { return nil }
        // Virtual address to file offset, through the loadable segments.
        func fileOffset(_ vaddr: UInt64) -> Int? {
            for l in loads where vaddr >= l.vaddr && vaddr - l.vaddr < l.size {
                return Int(l.offset + (vaddr - l.vaddr))
            }
            return nil
        }
        var strtab: UInt64?
        var neededOffsets: [UInt64] = []
        var pathOffsets: [UInt64] = []
        var at = Int(dynamic.offset)
        let end = Int(dynamic.offset + min(dynamic.size, UInt64(bytes.count)))
        while at + 16 <= end, let tag = u64(at), let value = u64(at + 8), tag != 0 {
            switch tag {
            case 1: neededOffsets.append(value)  // DT_NEEDED
            case 5: strtab = value  // DT_STRTAB
            case 15, 29: pathOffsets.append(value)  // DT_RPATH, DT_RUNPATH
            default: break
            }
            at += 16
        }
        guard let strtab, let base = fileOffset(strtab) else { return nil }
        func string(_ offset: UInt64) -> String? {
            guard offset < UInt64(bytes.count), base + Int(offset) < bytes.count else { return nil }
            let start = base + Int(offset)
            guard let nul = bytes[start...].firstIndex(of: 0) else { return nil }
            return String(decoding: bytes[start..<nul], as: UTF8.self)
        }
        needed = neededOffsets.compactMap(string)
        searchPaths = pathOffsets.compactMap(string).flatMap { $0.split(separator: ":").map(String.init) }
    }

    /// Why these dependencies could load code the checks never saw, or nil.
    ///
    /// The rule, in order (docs/security.md states it the same way):
    /// 1. A library named by path (`DT_NEEDED` with a `/`) is refused.
    /// 2. When every needed soname is in `loaded` (the libraries already in
    ///    the process that loads the plugin, such as the Swift runtime that
    ///    `migrator` brought), the dynamic loader searches nothing, so the
    ///    search directories do not matter.
    /// 3. Otherwise each `DT_RUNPATH`/`DT_RPATH` entry is judged. A bare
    ///    `$ORIGIN` is passed over: under memfd loading it names
    ///    `/proc/self/fd`, where nothing resolves. Any other use of `$ORIGIN`
    ///    is substituted and checked like an absolute entry; `$LIB`,
    ///    `$PLATFORM` and relative entries are refused. An existing directory
    ///    must pass the owner and mode rule of the migrations folder, with its
    ///    ancestors, and lie outside that folder. A directory that does not
    ///    exist is judged by its nearest existing ancestor, which must be
    ///    writable by nobody but you or root, sticky bit or not (anyone may
    ///    create a directory in `/tmp`).
    func problem(migrationsDirectory: String, loaded: Set<String>) -> String? {
        for library in needed where library.contains("/") {
            return
                "it needs the library '\(library)' by path; "
                + "name libraries by soname and install them in a system directory"
        }
        guard needed.contains(where: { !loaded.contains($0) }) else { return nil }
        for entry in searchPaths where entry != "$ORIGIN" && entry != "${ORIGIN}" {
            if let why = Self.searchDirectoryProblem(entry, migrationsDirectory: migrationsDirectory) {
                return why
            }
        }
        return nil
    }

    /// Where `$ORIGIN` points for a plugin loaded from a sealed memfd.
    static let memfdOrigin = "/proc/self/fd"

    private static func searchDirectoryProblem(_ entry: String, migrationsDirectory: String) -> String? {
        let path = entry.replacing("${ORIGIN}", with: memfdOrigin).replacing("$ORIGIN", with: memfdOrigin)
        if path.contains("$") {
            return
                "its RUNPATH entry '\(entry)' uses a substitution ($LIB, $PLATFORM or another) "
                + "whose directory cannot be checked before loading"
        }
        guard path.hasPrefix("/") else {
            return "its RUNPATH has the relative directory '\(entry)', which depends on the current directory"
        }
        let shown = path == entry ? "'\(entry)'" : "'\(entry)' ('\(path)')"
        guard let real = PluginDirectory.realPath(path) else {
            return missingDirectoryProblem(path, shown: shown)
        }
        if real == migrationsDirectory || real.hasPrefix(migrationsDirectory + "/") {
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

    /// A search directory that does not exist: safe only if nobody but you
    /// or root can create it, which its nearest existing ancestor decides.
    private static func missingDirectoryProblem(_ path: String, shown: String) -> String? {
        var ancestor = path
        var real: String?
        while real == nil {
            guard let slash = ancestor.lastIndex(of: "/"), ancestor != "/" else { break }
            ancestor = slash == ancestor.startIndex ? "/" : String(ancestor[..<slash])
            real = PluginDirectory.realPath(ancestor)
        }
        var st = stat()
        guard let real, stat(real, &st) == 0 else {
            return "its RUNPATH directory \(shown) does not exist, and no directory above it can be examined"
        }
        if (st.st_mode & S_IFMT) != S_IFDIR { return nil }  // nothing can be created under a file
        let uid = getuid()
        let creatable =
            st.st_uid != uid && st.st_uid != 0
            ? "is owned by uid \(st.st_uid)"
            : st.st_mode & (S_IWGRP | S_IWOTH) != 0
                ? "is writable by \((st.st_mode & S_IWOTH) != 0 ? "everyone" : "its group") "
                    + "(mode \(String(st.st_mode & 0o7777, radix: 8)))" : nil
        if let creatable {
            return
                "its RUNPATH directory \(shown) does not exist, and '\(real)' \(creatable): "
                + "someone else could create it and plant a library the plugin loads"
        }
        if let why = PluginDirectory.ancestorProblem(of: real + "/x", below: nil) {
            return "its RUNPATH directory \(shown) does not exist, and it would be inside \(why)"
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
