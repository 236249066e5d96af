import MigratorCLI

#if canImport(Glibc)
import Glibc
#endif

// All behaviour lives in MigratorCLI, where tests and embedding apps reach it.
var environment: [String: String] = [:]
var envp = environ
while let entry = envp.pointee {
    let pair = String(cString: entry)
    if let eq = pair.firstIndex(of: "=") { environment[String(pair[..<eq])] = String(pair[pair.index(after: eq)...]) }
    envp += 1
}
exit(MigratorCommandLine.main(Array(CommandLine.arguments.dropFirst()), context: Context(environment: environment)))
