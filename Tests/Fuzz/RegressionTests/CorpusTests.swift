import Foundation
import FuzzTargets
import TestSupport
import Testing

/// Every input in the committed corpus (seeds, and everything the fuzzer
/// found) runs through its target on every test run. A broken invariant is
/// recorded as a test failure naming the input file.
@Suite struct CorpusTests {
    @Test(arguments: FuzzTargets.names)
    func corpusReplays(target: String) throws {
        let dir = Fixtures.packageRoot + "/Tests/Fuzz/corpus/" + target
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files.count >= 5, "the \(target) corpus has seeds")
        for f in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + f))
            let broken = data.withUnsafeBytes { FuzzTargets.run(target, $0) }
            #expect(broken.isEmpty, "\(target)/\(f): \(broken.joined(separator: "; "))")
        }
    }
}
