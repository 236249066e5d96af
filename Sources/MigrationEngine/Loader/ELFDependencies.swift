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
    /// `$ORIGIN` is allowed (under memfd loading it names `/proc/self/fd`,
    /// where nothing resolves); other search directories must be absolute
    /// and pass the same owner and mode rule as the migrations folder, and
    /// may not lie inside it.
    func problem(migrationsDirectory: String) -> String? {
        for path in searchPaths where !path.hasPrefix("$ORIGIN") && !path.hasPrefix("${ORIGIN}") {
            guard path.hasPrefix("/") else {
                return "its RUNPATH has the relative directory '\(path)', which depends on the current directory"
            }
            let real = PluginDirectory.realPath(path) ?? path
            if real == migrationsDirectory || real.hasPrefix(migrationsDirectory + "/") {
                return
                    "its RUNPATH directory '\(path)' is inside the migrations folder, "
                    + "whose files are not checked as libraries"
            }
            var st = stat()
            if stat(real, &st) == 0, let why = PluginDirectory.ownershipProblem(st) {
                return
                    "its RUNPATH directory '\(path)' \(why); anyone who can write there can replace a library it loads"
            }
            if let why = PluginDirectory.ancestorProblem(of: real + "/x", below: nil) {
                return "its RUNPATH directory '\(path)' is inside \(why)"
            }
        }
        for library in needed where library.contains("/") {
            return
                "it needs the library '\(library)' by path; "
                + "name libraries by soname and install them in a system directory"
        }
        return nil
    }
}
