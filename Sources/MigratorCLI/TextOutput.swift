import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Buffered writes to a file descriptor: data to stdout, messages to stderr.
final class TextOutput {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) {
        self.fd = fd
        buffer.reserveCapacity(1 << 16)
    }

    func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    func write(bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 16 { flush() }
    }

    func line(_ s: String) {
        write(s)
        write("\n")
    }

    /// The errno of the first failed write, if one failed (output after it
    /// is dropped): a full disk must not pass for a finished export.
    private(set) var writeError: Int32?

    func flush() {
        if writeError == nil {
            writeError = buffer.withUnsafeBytes { b in
                fd == 2 ? Self.stderrLock.withLock { _ in Self.writeAll(fd, b) } : Self.writeAll(fd, b)
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Held while anything writes to stderr, so that this process's
    /// messages and plugin output forwarded from another thread never
    /// interleave within a line.
    static let stderrLock = Mutex(())

    /// Writes all of `bytes` (through `EINTR`, and `EAGAIN` on a descriptor
    /// someone made non-blocking); the errno of a failure, or nil.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32? {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 1000)
                    continue
                }
                return errno
            }
            offset += n
        }
        return nil
    }

    /// True when the descriptor is a terminal.
    var isTerminal: Bool { isatty(fd) == 1 }
}

/// Text from plugins and databases made safe for a terminal: control
/// characters (escape sequences, line breaks, carriage returns) are shown
/// escaped, so they can neither redraw the screen nor fake a line.
func printable(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return s }
    var out = ""
    for u in s.unicodeScalars {
        switch u {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case _ where u.value < 0x20 || u.value == 0x7F:
            let hex = String(u.value, radix: 16)
            out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
        default: out.unicodeScalars.append(u)
        }
    }
    return out
}
