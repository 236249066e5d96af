// libFuzzer entry for FuzzTargets; FUZZ_TARGET picks the target.
// Built by scripts/fuzz.sh with `swift build --sanitize=fuzzer -Xswiftc -DFUZZING`;
// without FUZZING it is a replayer: `Fuzzer TARGET FILE...`. Debug builds
// only: FuzzTargets is empty in release (see its header).
#if DEBUG
import FuzzTargets
#if canImport(Glibc)
import Glibc
#endif

let fuzzTarget: String = getenv("FUZZ_TARGET").map { String(cString: $0) } ?? "json"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let broken = FuzzTargets.run(fuzzTarget, UnsafeRawBufferPointer(start: data, count: size))
    // libFuzzer only notices crashes: turn a broken invariant into one.
    if let first = broken.first { fatalError("invariant broken: \(first)") }
    return 0
}

#if !FUZZING
@main
struct Replay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let target = args.first, FuzzTargets.names.contains(target) else {
            print("usage: Fuzzer TARGET FILE...   (targets: \(FuzzTargets.names.joined(separator: ", ")))")
            exit(2)
        }
        for path in args.dropFirst() {
            guard let f = fopen(path, "rb") else { continue }
            var bytes: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n <= 0 { break }
                bytes += buf[..<n]
            }
            fclose(f)
            let broken = bytes.withUnsafeBytes { FuzzTargets.run(target, $0) }
            for b in broken { print("\(path): \(b)") }
            if !broken.isEmpty { exit(1) }
        }
    }
}
#endif
#else
@main
struct Replay {
    static func main() { print("the fuzz targets are built in debug only: swift build --product Fuzzer") }
}
#endif
