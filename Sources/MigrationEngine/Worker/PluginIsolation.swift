#if canImport(Glibc)
import Glibc
#endif

/// Where plugin code runs.
public struct PluginIsolation: Sendable, Equatable {
    /// The executable that serves as the worker (`migrator __worker`), if any.
    let executable: String?
    /// Forward SIGINT, SIGTERM, SIGQUIT and SIGHUP to the worker during a step.
    let forwardSignals: Bool
    /// How long loading may stall (a hanging constructor) before the worker is killed.
    var loadTimeout: Double = 60
    /// Whether plugin code in the worker may open network sockets: only
    /// when the database is a server's (PostgreSQL, through libpq). Set by
    /// ``Migrator/loadPlugins(from:options:)`` from the database it runs on.
    var allowsNetwork = false
    /// Where the worker's standard output and error go, line by line (from
    /// another thread); nil: straight to this process's standard error.
    public var output: (@Sendable (String) -> Void)? = nil

    /// Equal when they run plugins the same way (``output`` aside).
    public static func == (a: PluginIsolation, b: PluginIsolation) -> Bool {
        a.executable == b.executable && a.forwardSignals == b.forwardSignals && a.loadTimeout == b.loadTimeout
    }

    /// Plugins are loaded into this process (the default for embedding apps).
    public static let inProcess = PluginIsolation(executable: nil, forwardSignals: false)

    /// Plugins are loaded and run only in a worker process, `executable
    /// __worker` (the `migrator` binary): a plugin that crashes, exits or
    /// hangs fails its step instead of taking the caller down or faking a
    /// success. `forwardSignals` installs handlers that pass the operator's
    /// signals to the worker while a step runs (the CLI does). Loading that
    /// stalls for `loadTimeout` seconds (a constructor or entry function that
    /// hangs) kills the worker and is reported for the file; a migrator whose
    /// ``Migrator/Options/stepTimeout`` is set uses that instead.
    public static func worker(
        executable: String, forwardSignals: Bool = false, loadTimeout: Double = 60
    ) -> PluginIsolation {
        PluginIsolation(executable: executable, forwardSignals: forwardSignals, loadTimeout: loadTimeout)
    }
}
