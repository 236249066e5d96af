// The engine benchmark's library side: the same build and the same plugins,
// run with plugins loaded in this process and in a worker process (this
// executable again, as `migrator` does), so that bench/engine-bench.sh can
// print the worker boundary's cost as a ratio measured in one run.
//   engine-bench in-process|worker PLUGIN_DIR DB   (prints apply and rollback seconds)
import MigrationEngine

#if canImport(Glibc)
import Glibc
#endif

let args = Array(CommandLine.arguments.dropFirst())
if PluginWorker.isWorkerInvocation(args) { exit(PluginWorker.serve(arguments: args)) }

func fail(_ s: String, _ code: Int32) -> Never {
    _ = (s + "\n").withCString { write(2, $0, strlen($0)) }
    exit(code)
}

guard args.count == 3, ["in-process", "worker"].contains(args[0]) else {
    fail("usage: engine-bench in-process|worker PLUGIN_DIR DB", 2)
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Loads the plugins and runs `body`, timed, with a fresh Migrator: each
/// phase is a fresh CLI process in real use.
func timed(_ body: (Migrator) throws -> Void) throws -> Double {
    var options = Migrator.Options()
    if args[0] == "worker" { options.pluginIsolation = .worker(executable: "/proc/self/exe") }
    let t0 = now()
    let m = Migrator(databasePath: args[2], options: options)
    try m.loadPlugins(from: args[1])
    try body(m)
    return now() - t0
}

do {
    let apply = try timed { m in _ = try m.migrateUp() }
    let rollback = try timed { m in _ = try m.rollback(.all) }
    print("apply \(apply)")
    print("rollback \(rollback)")
} catch {
    fail("engine-bench: \(error)", 1)
}
