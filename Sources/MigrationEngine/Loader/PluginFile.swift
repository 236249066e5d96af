import DocumentStore
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// A plugin file that passed every check that can be made without running
/// any of its code: location, ownership and mode, ELF structure, hash.
package struct CheckedPluginFile {
    /// The file name inside the directory, e.g. `001_setup.so`.
    let name: String
    /// `directory/name`, for messages.
    let path: String
    let sha256: String
    let identity: FileIdentity
    /// The cache key: the real directory path plus the name.
    let key: String
    /// The plugin as cached, when `descriptorsOnly` and unchanged.
    var cached: LoadedPlugin?
    /// The trusted key that signed it, when signatures are required.
    var signer: String? = nil
    /// Whether its hash matched a pin of its source (`migrations.lock`).
    var pinned = false
    /// The bundle it came from (`name #sequence`), if it did.
    package var bundle: String?
    /// The bytes that were checked and hashed (nil when `cached`): these,
    /// and only these, are what gets loaded.
    var bytes: [UInt8]? = nil

    /// An image of a source, checked here by ``ImageCheck`` (there is no
    /// other way for a source to make one): its bytes, name, where it came
    /// from (`origin`: what `$ORIGIN` names for it), the key that signed it
    /// and whether a pin matched, as the source found.
    /// - Throws: ``ImageCheck``'s refusal, naming `path`.
    package init(
        checking bytes: [UInt8], name: String, path: String, key: String, origin: String, policy: SourcePolicy,
        signer: String? = nil, pinned: Bool = false, warnings: inout [String]
    ) throws(MigratorError) {
        let sha256 = try ImageCheck.check(
            bytes, name: name, path: path, origin: origin, insecure: policy.insecure,
            loadedLibraries: policy.loadedLibraries, warnings: &warnings)
        self.init(
            name: name, path: path, sha256: sha256,
            identity: FileIdentity(device: 0, inode: 0, size: Int64(bytes.count), mtimeNanoseconds: 0), key: key,
            signer: signer, bytes: bytes)
        self.pinned = pinned
    }

    init(
        name: String, path: String, sha256: String, identity: FileIdentity, key: String,
        cached: LoadedPlugin? = nil, signer: String? = nil, bytes: [UInt8]? = nil
    ) {
        self.name = name
        self.path = path
        self.sha256 = sha256
        self.identity = identity
        self.key = key
        self.cached = cached
        self.signer = signer
        self.bytes = bytes
    }
}

/// What identifies a file's content cheaply: unchanged identity means
/// unchanged bytes, short of deliberate tampering with timestamps.
package struct FileIdentity: Sendable, Hashable, Codable {
    package let device: UInt64
    package let inode: UInt64
    package let size: Int64
    package let mtimeNanoseconds: Int64
}

extension FileIdentity {
    init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        mtimeNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }
}

/// The migrations directory: discovery and the pre-`dlopen` checks.
enum PluginDirectory {
    typealias Scan = SourceScan

    /// Finds `*.so` regular files directly in `directory`, in byte order of
    /// their names, and checks each one (`loadedLibraries`: the sonames the
    /// process that will load them already has, see ``ELFDependencies``).
    /// Throws only when the directory
    /// itself cannot be used. `onChecked` sees each file as soon as it
    /// passed, so that loading can overlap with checking the rest.
    static func scan(
        _ directory: String, insecure: Bool, cache: DescriptorCache = .init(), descriptorsOnly: Bool = false,
        requirePin: Bool = false, trustedKeys: [PluginSignatures.PublicKey]? = nil, usePins: Bool = true,
        loadedLibraries: Set<String> = [], onChecked: (CheckedPluginFile) -> Void = { _ in }
    ) throws(MigratorError) -> Scan {
        var scan = Scan()
        func refuseOrWarn(_ message: String) throws(MigratorError) {
            try MigratorError(.insecurePermissions, message).unless(insecure: insecure) { scan.warnings.append($0) }
        }
        // Resolved once and opened once: everything after is read through
        // this descriptor (entries, files, pins, signatures), so a link on
        // the way re-pointed meanwhile changes nothing.
        guard let realDir = realPath(directory) else {
            let e = errno
            if e == ENOENT || e == ENOTDIR {
                throw MigratorError(.directoryNotFound, "migrations directory '\(directory)' does not exist")
            }
            throw MigratorError(.directoryUnreadable, "migrations directory '\(directory)': \(errorText(e))")
        }
        guard let folder = OpenDirectory(opening: realDir, as: directory), let st = folder.status else {
            let e = errno
            if e == ENOTDIR {
                throw MigratorError(.directoryNotFound, "migrations directory '\(directory)' is not a directory")
            }
            throw MigratorError(
                .directoryUnreadable, "cannot read migrations directory '\(directory)': \(errorText(e))")
        }
        if let problem = ownershipProblem(st) {
            try refuseOrWarn(
                "migrations directory '\(directory)' \(problem); anyone who can write to it can run code as you")
        }
        // Whoever can write a folder on the way can swap the whole folder
        // (sshd checks them too), or point a link on the way elsewhere.
        if let problem = pathProblem(of: directory) {
            try refuseOrWarn(
                "migrations directory '\(directory)' is inside \(problem); anyone who can write there "
                    + "can replace the migrations")
        }
        // Read once the folder itself passed: it is as trusted as the pins.
        let pins = usePins ? try PinFile.read(folder, insecure: insecure) : nil
        if pins == nil && requirePin && usePins {
            throw MigratorError(
                .invalidPinFile, "no \(PinFile.name) in '\(directory)', and pins are required (migrator pin writes one)"
            )
        }
        let trust = TrustPolicy(pins: pins, trustedKeys: trustedKeys)
        guard var names = folder.entries() else {
            throw MigratorError(
                .directoryUnreadable, "cannot read migrations directory '\(directory)': \(errorText(errno))")
        }
        names.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }

        for name in names {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            guard name.hasSuffix(".so") else {
                // The pins and signatures that go with the plugins.
                if name != PinFile.name && !name.hasSuffix(".so.sig") {
                    scan.skipped.append("\(path): not a .so file")
                }
                continue
            }
            do {
                var file = try check(
                    name: name, path: path, in: folder, realDir: realDir, insecure: insecure,
                    warnings: &scan.warnings, cache: cache, descriptorsOnly: descriptorsOnly,
                    loadedLibraries: loadedLibraries)
                // Before any of its code is loaded: on the hash of the checked bytes.
                file.signer = try trust.check(name: name, path: path, in: folder, sha256: file.sha256)
                file.pinned = pins != nil
                onChecked(file)
                scan.files.append(file)
            } catch {
                scan.problems.append(error)
            }
        }
        return scan
    }

    /// One entry, checked in order: what it is and where it leads (a link
    /// must stay inside), who can write it, then its bytes (``ImageCheck``).
    /// Unchanged since the descriptor cache was written, with
    /// `descriptorsOnly`, it is not read at all.
    private static func check(
        name: String, path: String, in folder: OpenDirectory, realDir: String, insecure: Bool,
        warnings: inout [String], cache: DescriptorCache, descriptorsOnly: Bool, loadedLibraries: Set<String>
    ) throws(MigratorError) -> CheckedPluginFile {
        let (fd, st) = try open(
            name: name, path: path, in: folder, realDir: realDir, insecure: insecure,
            warnings: &warnings)
        defer { close(fd) }
        let key = realDir + "/" + name
        let identity = FileIdentity(st)
        if descriptorsOnly, let known = cache.entries[key].flatMap({ $0.identity == identity ? $0.plugin : nil }) {
            return CheckedPluginFile(
                name: name, path: path, sha256: known.sha256, identity: identity, key: key, cached: known)
        }
        let bytes = try read(fd, size: Int(st.st_size), name: name, path: path)
        // Whatever the file's timestamps say: its bytes are checked and hashed.
        let sha256 = try ImageCheck.check(
            bytes, name: name, path: path, origin: realDir, insecure: insecure, loadedLibraries: loadedLibraries,
            warnings: &warnings)
        return CheckedPluginFile(name: name, path: path, sha256: sha256, identity: identity, key: key, bytes: bytes)
    }

    /// Opens the entry `name`: itself, relative to the folder's descriptor,
    /// or an allowed symlink's resolved target (one that stays inside, on a
    /// path as safe as the folder). Opened with `O_NOFOLLOW`, so a link
    /// swapped in after the check is refused rather than followed; then it
    /// must be a regular file that only its owner (you or root) can write.
    private static func open(
        name: String, path: String, in folder: OpenDirectory, realDir: String, insecure: Bool,
        warnings: inout [String]
    ) throws(MigratorError) -> (fd: Int32, status: stat) {
        func fail(_ code: MigratorError.Code, _ why: String) -> MigratorError {
            MigratorError(code, "plugin '\(path)': \(why)", file: name)
        }
        var lst = stat()
        guard fstatat(folder.fd, name, &lst, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw fail(.loadFailed, errorText(errno))
        }
        var target: String?
        if (lst.st_mode & S_IFMT) == S_IFLNK {
            guard let resolved = realPath(realDir + "/" + name) else {
                throw fail(.notAPlugin, "a symlink whose target cannot be resolved (\(errorText(errno)))")
            }
            guard resolved.hasPrefix(realDir + "/") else {
                throw fail(
                    .notAPlugin,
                    "a symlink to '\(resolved)', outside the migrations directory; "
                        + "only links that stay inside are followed"
                )
            }
            // A subdirectory on the way must be as safe as the folder itself.
            if let problem = ancestorProblem(of: resolved, below: realDir) {
                let message = "plugin '\(path)' links into \(problem); anyone who can write there can swap the plugin"
                try MigratorError(.insecurePermissions, message, file: name).unless(insecure: insecure) {
                    warnings.append($0)
                }
            }
            target = resolved
        }
        let flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | migrator_O_NOFOLLOW
        let fd = target.map { Glibc.open($0, flags) } ?? openat(folder.fd, name, flags)
        guard fd >= 0 else {
            let e = errno
            let why = e == ELOOP ? "became a symbolic link while being checked; refusing it" : errorText(e)
            throw fail(.loadFailed, "cannot open: \(why)")
        }
        do throws(MigratorError) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw fail(.loadFailed, errorText(errno)) }
            switch st.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFDIR: throw fail(.notAPlugin, "is a directory, not a plugin file")
            default: throw fail(.notAPlugin, "is not a regular file")
            }
            if let problem = ownershipProblem(st) {
                let message = "plugin '\(path)' \(problem); anyone who can write to it can run code as you"
                try MigratorError(.insecurePermissions, message, file: name).unless(insecure: insecure) {
                    warnings.append($0)
                }
            }
            return (fd, st)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The `size` bytes of `fd`, read once: these are what is hashed and loaded.
    private static func read(_ fd: Int32, size: Int, name: String, path: String) throws(MigratorError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, size - got, off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let why = n == 0 ? "the file shrank while being read" : "read failed: \(errorText(errno))"
                throw MigratorError(.loadFailed, "plugin '\(path)': \(why)", file: name)
            }
            got += n
        }
        return bytes
    }

    /// sshd StrictModes: writable by group or others, or owned by someone
    /// other than the current user or root.
    static func ownershipProblem(_ st: stat) -> String? {
        let uid = getuid()
        if st.st_uid != uid && st.st_uid != 0 { return "is owned by uid \(st.st_uid), not by you (uid \(uid)) or root" }
        if st.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            let who = (st.st_mode & S_IWOTH) != 0 ? "everyone" : "its group"
            return "is writable by \(who) (mode \(String(st.st_mode & 0o7777, radix: 8)))"
        }
        return nil
    }

    /// Why the directory `path` (symlink-free) could be written by
    /// someone else: owned by another user than you or root, or writable by
    /// group or others without the sticky bit (as `/tmp` has). nil if not.
    static func directoryProblem(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return "'\(path)', which cannot be examined (\(errorText(errno)))" }
        let uid = getuid()
        if st.st_uid != uid && st.st_uid != 0 { return "'\(path)', owned by uid \(st.st_uid)" }
        if st.st_mode & (S_IWGRP | S_IWOTH) != 0 && st.st_mode & S_ISVTX == 0 {
            let who = (st.st_mode & S_IWOTH) != 0 ? "everyone" : "its group"
            return "'\(path)', which is writable by \(who) (mode \(String(st.st_mode & 0o7777, radix: 8)))"
        }
        return nil
    }

    /// The first directory that someone else could write among those that
    /// hold a component of `path`: the path as given, resolved here one
    /// component at a time, so that the folder holding each symlink on the
    /// way counts, not only those of the real path (whoever can write it
    /// chooses where the link leads). In a sticky folder others can write,
    /// a link is trusted only if you or root own it. nil if none; a
    /// component that does not exist ends the walk.
    static func pathProblem(of path: String) -> String? {
        let absolute = path.hasPrefix("/") ? path : currentDirectory() + "/" + path
        var pending = absolute.split(separator: "/").map(String.init)
        var index = 0
        var current = "/"
        var links = 0
        while index < pending.count {
            let component = pending[index]
            index += 1
            if component == "." { continue }
            if component == ".." {
                current = String(current.split(separator: "/").dropLast().joined(separator: "/"))
                current = "/" + current
                continue
            }
            if let problem = directoryProblem(current) { return problem }
            let next = current == "/" ? "/" + component : current + "/" + component
            var st = stat()
            guard lstat(next, &st) == 0 else { return nil }
            guard st.st_mode & S_IFMT == S_IFLNK else {
                current = next
                continue
            }
            var holder = stat()
            if stat(current, &holder) == 0, holder.st_mode & S_ISVTX != 0, holder.st_mode & S_IWOTH != 0,
                st.st_uid != getuid() && st.st_uid != 0
            {
                return "'\(next)', a symlink owned by uid \(st.st_uid) in a folder everyone can write"
            }
            links += 1
            var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(next, &target, target.count - 1)
            guard links <= 40, n > 0 else { return "'\(next)', a symlink that cannot be followed" }
            let text = String(decoding: target.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("/") { current = "/" }
            pending = text.split(separator: "/").map(String.init) + pending[index...]
            index = 0
        }
        return nil
    }

    /// The first directory on the way to `path` (from `/`, or from just below
    /// `top` when given, down to `path`'s parent) that someone else could
    /// write: owned by another user than you or root, or writable by group
    /// or others without the sticky bit (as `/tmp` has). nil if none.
    static func ancestorProblem(of path: String, below top: String?) -> String? {
        let components = path.split(separator: "/").map(String.init).dropLast()
        var current = ""
        for c in components {
            current += "/" + c
            if let top, current.count <= top.count { continue }
            if let problem = directoryProblem(current) { return problem }
        }
        return nil
    }

    /// The identity of the file `path` names now (following symlinks).
    static func identity(of path: String) -> FileIdentity? {
        var st = stat()
        return stat(path, &st) == 0 ? FileIdentity(st) : nil
    }

    /// The working directory ("" if it cannot be named).
    static func currentDirectory() -> String {
        guard let p = getcwd(nil, 0) else { return "" }
        defer { free(p) }
        return String(cString: p)
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

/// Structural checks on an ELF shared object, so that `dlopen` never sees
/// a file that would crash it (a truncated segment raised SIGBUS inside
/// `dlopen` in experiments) or fail with a misleading message.
enum ELFCheck {
    #if arch(x86_64)
    static let hostMachine: UInt16 = 62
    #elseif arch(arm64)
    static let hostMachine: UInt16 = 183
    #else
    static let hostMachine: UInt16 = 0
    #endif

    static func machineName(_ m: UInt16) -> String {
        switch m {
        case 3: return "x86 (32-bit)"
        case 40: return "ARM (32-bit)"
        case 62: return "x86-64"
        case 183: return "AArch64"
        case 243: return "RISC-V"
        default: return "machine type \(m)"
        }
    }

    /// Why `bytes` is not a loadable shared object for this host, or `nil`.
    static func problem(_ bytes: [UInt8]) -> String? {
        if bytes.isEmpty { return "the file is empty; it is not a shared library" }
        guard bytes.count >= 4, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
            return "not an ELF file (no \\x7fELF magic); is it a text file or a wrongly named file?"
        }
        guard bytes.count >= 64 else { return "truncated ELF: \(bytes.count) bytes is shorter than an ELF header" }
        if bytes[4] != 2 {
            return "a \(bytes[4] == 1 ? "32-bit" : "unknown-class") ELF file; this host loads 64-bit plugins"
        }
        if bytes[5] != 1 { return "a big-endian ELF file; this host is little-endian" }
        func u16(_ o: Int) -> UInt16 { UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[o + $1]) << (8 * UInt32($1)) } }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) } }
        let type = u16(16)
        if type != 3 {
            let kind = type == 2 ? ", an executable" : type == 1 ? ", an object file" : ""
            return "not a shared library (ELF type \(type)\(kind)); build it with -shared"
        }
        let machine = u16(18)
        if machine != hostMachine {
            return "built for \(machineName(machine)); this host is \(machineName(hostMachine))"
        }
        let phoff = u64(32)
        let phentsize = UInt64(u16(54))
        let phnum = UInt64(u16(56))
        let size = UInt64(bytes.count)
        guard phentsize == 56, phnum > 0, phoff <= size, phnum * 56 <= size - phoff else {
            return "truncated or corrupt ELF: the program header table does not fit in the file (\(size) bytes)"
        }
        for i in 0..<Int(phnum) {
            let ph = Int(phoff) + i * 56
            guard u32(ph) == 1 else { continue }  // PT_LOAD
            let offset = u64(ph + 8)
            let filesz = u64(ph + 32)
            let (end, overflow) = offset.addingReportingOverflow(filesz)
            if overflow || end > size {
                let needed = overflow ? "beyond 2^64" : String(end)
                return "truncated ELF: loadable segment \(i) needs bytes up to \(needed), but the file has \(size); "
                    + "was the copy cut short?"
            }
        }
        return nil
    }
}
