import MigrationKit

/// The plugin's one exported symbol. The linker version script
/// (exports.map) keeps every other symbol local.
@_cdecl("migrator_plugin_entry_v1")
public func migratorPluginEntry() -> UnsafeRawPointer {
    MigrationBundle.export(
        name: "example-swift-migrations",
        migrations: [
            InitialSetup(),
            UserPreferences(),
            DocumentAnalysisEnhancement(),
        ])
}
