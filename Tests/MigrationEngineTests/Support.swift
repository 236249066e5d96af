import Foundation
import MigrationEngine
import TestSupport
import Testing

/// Loads `dir`, failing the test if the directory itself is rejected.
func loadPlugins(_ dir: String, options: PluginLoader.Options = .init()) -> PluginSet {
    do { return try PluginLoader.load(directory: dir, options: options) } catch {
        Issue.record("loading \(dir) failed: \(error)")
        return PluginSet()
    }
}

/// A temporary directory with one compiled fixture plugin per entry.
func pluginDirectory(_ plugins: [(name: String, source: String)], tag: String = "plugins") throws -> String {
    let dir = Fixtures.temporaryDirectory(tag)
    for p in plugins { try Fixtures.compilePlugin(p.source, name: p.name, in: dir) }
    return dir
}
