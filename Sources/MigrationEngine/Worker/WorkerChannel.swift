import DocumentStore

#if canImport(Glibc)
import Glibc
#endif

/// One direction of the parent–worker pipe: length-prefixed frames (a
/// little-endian `UInt32` length, then the bytes). Messages are JSON
/// objects; a plugin image travels as a raw frame after its `load` message.
struct WorkerChannel {
    let fd: Int32
    /// The largest frame accepted: a plugin image, or a message.
    static let maxFrame = 1 << 30

    /// Writes one frame; false if the other side is gone, or stopped reading
    /// for `patience` seconds (then it may be hung: the caller kills it).
    @discardableResult
    func send(_ bytes: [UInt8], patience: Double? = nil) -> Bool {
        var length = UInt32(bytes.count).littleEndian
        var frame = [UInt8](repeating: 0, count: 4)
        withUnsafeBytes(of: &length) { for i in 0..<4 { frame[i] = $0[i] } }
        frame += bytes
        var sent = 0
        while sent < frame.count {
            guard writable(patience: patience) else { return false }
            let n = frame.withUnsafeBytes { write(fd, $0.baseAddress! + sent, $0.count - sent) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    /// Writes one JSON message.
    @discardableResult
    func send(_ message: JSON, patience: Double? = nil) -> Bool {
        send(JSONSerializer.bytes(message), patience: patience)
    }

    /// Whether something (a frame, or the end of file) can be read within
    /// `seconds`; false when the time passed first or a signal came.
    func readable(within seconds: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(max(0, min(seconds * 1000, 60_000)).rounded(.up))) > 0
    }

    /// Whether a write can proceed within `patience` seconds (nil: wait).
    func writable(patience: Double?) -> Bool {
        guard let patience else { return true }
        let deadline = EngineClock.monotonic() + patience
        while true {
            let left = deadline - EngineClock.monotonic()
            guard left > 0 else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let r = poll(&p, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
            if r > 0 { return true }
            if r < 0 && errno != EINTR { return false }
        }
    }

    /// Why nothing was received.
    enum Failure: Equatable {
        /// End of file, or a read error: the other side closed its end.
        case closed
        /// The deadline passed first.
        case timedOut
        /// Something arrived that is not a frame (a length over
        /// ``maxFrame``) or not a JSON object: a protocol violation.
        case malformed(String)
    }

    /// Reads one frame; nil at end of file, on an error, on a frame too
    /// large, or when `deadline` (monotonic seconds) passes first; `failure`
    /// says which.
    func receive(deadline: Double? = nil, failure: UnsafeMutablePointer<Failure?>? = nil) -> [UInt8]? {
        guard let header = read(4, deadline: deadline, failure: failure) else { return nil }
        let length = Int(UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24)
        guard length <= Self.maxFrame else {
            failure?.pointee = .malformed("a frame of \(length) bytes, over the limit of \(Self.maxFrame)")
            return nil
        }
        return read(length, deadline: deadline, failure: failure)
    }

    /// Reads one JSON object message; nil as for ``receive(deadline:failure:)``,
    /// or `.malformed` for a frame that is not a JSON object.
    func receiveMessage(deadline: Double? = nil, failure: UnsafeMutablePointer<Failure?>? = nil) -> JSONObject? {
        guard let bytes = receive(deadline: deadline, failure: failure) else { return nil }
        guard let object = (try? bytes.withUnsafeBytes { try JSON(parsing: $0) })?.objectValue else {
            failure?.pointee = .malformed("a frame of \(bytes.count) bytes that is not a JSON object")
            return nil
        }
        return object
    }

    private func read(_ count: Int, deadline: Double?, failure: UnsafeMutablePointer<Failure?>?) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            if let deadline {
                let left = deadline - EngineClock.monotonic()
                guard left > 0 else {
                    failure?.pointee = .timedOut
                    return nil
                }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = poll(&p, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
                if r == 0 || (r < 0 && errno == EINTR) { continue }
            }
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + got, count - got) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                failure?.pointee = .closed
                return nil
            }
            got += n
        }
        return out
    }
}

extension JSONObject {
    /// The string at `key`, or "".
    func string(_ key: String) -> String { self[key]?.stringValue ?? "" }
    /// The integer at `key`, if it is one.
    func int(_ key: String) -> Int64? {
        if case .int(let v)? = self[key] { return v }
        return nil
    }
}
