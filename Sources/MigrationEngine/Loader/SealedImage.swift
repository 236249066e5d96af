import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// Loads the exact bytes that were checked: they are copied into a sealed
/// `memfd` (no write, shrink, grow or further seal is possible), and
/// `dlopen` opens that, so the file on disk can change or vanish without
/// changing what runs.
///
/// Each memfd stays open for the life of the process: glibc recognises an
/// already-loaded object by its name (`/proc/self/fd/N`), so a reused
/// number would hand a later plugin an earlier one's image. Images are
/// never unloaded (`RTLD_NODELETE`; unloading a Swift image crashes the
/// runtime).
enum SealedImage {
    /// `dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)` of `bytes`.
    /// - Throws: the reason, for a message that names the plugin.
    static func load(_ bytes: [UInt8], name: String) throws(SealedImageError) -> UnsafeMutableRawPointer {
        try open(seal(bytes, name: name))
    }

    /// A new memfd holding `bytes`, sealed against every change.
    static func seal(_ bytes: [UInt8], name: String) throws(SealedImageError) -> Int32 {
        let fd = migrator_memfd_create("migrator-plugin:" + name)
        guard fd >= 0 else { throw SealedImageError("memfd_create failed: \(errorText(errno))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                close(fd)
                throw SealedImageError("writing the image failed: \(errorText(e))")
            }
            written += n
        }
        guard migrator_seal_all(fd) == 0 else {
            let e = errno
            close(fd)
            throw SealedImageError("sealing the image failed: \(errorText(e))")
        }
        return fd
    }

    /// `dlopen` of a sealed memfd, which then stays open for good (it is
    /// closed if the open fails). A descriptor without every seal is refused:
    /// its bytes could still change under the loader.
    static func open(_ fd: Int32) throws(SealedImageError) -> UnsafeMutableRawPointer {
        guard migrator_is_sealed(fd) == 1 else {
            close(fd)
            throw SealedImageError("the image handed over is not a sealed memfd")
        }
        _ = dlerror()
        guard let handle = dlopen("/proc/self/fd/\(fd)", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            close(fd)
            throw SealedImageError("dlopen failed: \(why)")
        }
        // fd stays open on purpose: see the type's documentation.
        return handle
    }
}

/// Why a sealed image could not be loaded.
struct SealedImageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
