/// Word-at-a-time byte search for the JSON scanners: eight bytes per step,
/// using the classic "has a zero byte" bit trick. For each test the lowest
/// flagged byte is exact (higher ones may be false positives), which is all
/// a "find the first" search needs.
enum ByteScan {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highs: UInt64 = 0x8080_8080_8080_8080

    /// High bits flag bytes of `w` below `n` (n <= 128).
    @inline(__always) static func below(_ w: UInt64, _ n: UInt64) -> UInt64 {
        (w &- ones &* n) & ~w & highs
    }

    /// High bits flag bytes of `w` equal to `v`.
    @inline(__always) static func equal(_ w: UInt64, _ v: UInt64) -> UInt64 {
        below(w ^ (ones &* v), 1)
    }

    /// Advances `j` over whole words in which `flags` finds nothing, and
    /// stops on the first flagged byte (or fewer than 8 bytes before the end).
    @inline(__always)
    static func skip(_ b: UnsafeRawBufferPointer, from j: inout Int, flags: (UInt64) -> UInt64) {
        guard let base = b.baseAddress else { return }
        while j + 8 <= b.count {
            let w = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: j, as: UInt64.self))
            let f = flags(w)
            if f == 0 {
                j += 8
                continue
            }
            j += f.trailingZeroBitCount >> 3
            return
        }
    }
}
