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

    func flush() {
        var offset = 0
        buffer.withUnsafeBytes { b in
            while offset < b.count {
                let n = Glibc.write(fd, b.baseAddress! + offset, b.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
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
