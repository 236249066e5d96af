#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock and monotonic time, and who is running.
package enum EngineClock {
    /// Now as ISO-8601 UTC with milliseconds, e.g. `2026-11-26T10:00:05.123Z`.
    package static func iso8601() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return iso8601(seconds: Int(ts.tv_sec), milliseconds: Int(ts.tv_nsec / 1_000_000))
    }

    static func iso8601(seconds: Int, milliseconds: Int) -> String {
        var t = time_t(seconds)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(milliseconds), 3))Z"
    }

    /// Seconds since the epoch, now.
    static var now: Double { Double(time(nil)) }

    /// A lock timeout as messages give it: `60 s`, `0.5 s`.
    package static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
    }

    /// Monotonic seconds, for durations.
    package static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    package static let hostName: String = {
        var buf = [UInt8](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "unknown-host" }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }()

    package static let userName: String = {
        if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return "uid\(getuid())"
    }()

    /// `user@host (pid N)`: who applied or attempted a migration. In a
    /// worker, N is the runner that started it (``runnerPID``), so records
    /// name the process the operator ran.
    package static var actor: String { "\(userName)@\(hostName) (pid \(runnerPID ?? getpid()))" }

    /// Set once, first thing in a worker process, before any record is written.
    nonisolated(unsafe) static var runnerPID: pid_t?
}
