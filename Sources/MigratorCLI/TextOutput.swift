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
        var offset = 0
        buffer.withUnsafeBytes { b in
            while offset < b.count && writeError == nil {
                let n = Glibc.write(fd, b.baseAddress! + offset, b.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    writeError = errno
                    break
                }
                offset += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
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
