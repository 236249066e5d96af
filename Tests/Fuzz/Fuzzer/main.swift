// libFuzzer entry for FuzzTargets; FUZZ_TARGET picks the target.
// Built by scripts/fuzz.sh with `swift build --sanitize=fuzzer -Xswiftc -DFUZZING`;
// without FUZZING it is a replayer: `Fuzzer TARGET FILE...`.
import FuzzTargets
#if canImport(Glibc)
import Glibc
#endif

let fuzzTarget: String = getenv("FUZZ_TARGET").map { String(cString: $0) } ?? "json"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTargets.run(fuzzTarget, UnsafeRawBufferPointer(start: data, count: size))
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
            while true { let n = fread(&buf, 1, buf.count, f); if n <= 0 { break }; bytes += buf[..<n] }
            fclose(f)
            bytes.withUnsafeBytes { FuzzTargets.run(target, $0) }
        }
    }
}
#endif
