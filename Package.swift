// swift-tools-version:6.0
import PackageDescription
import Foundation

// Absolute paths for linker flags, whatever directory the build runs from.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path

let package = Package(
    name: "migrator",
    products: [
        .library(name: "DocumentStore", targets: ["DocumentStore"]),
        .library(name: "PostgresStore", targets: ["PostgresStore"]),
        .library(name: "MigrationKit", targets: ["MigrationKit"]),
        .library(name: "MigrationEngine", targets: ["MigrationEngine"]),
        .library(name: "PostgresDriver", targets: ["PostgresDriver"]),
        .executable(name: "migrator", targets: ["migrator"]),
        .executable(name: "store-bench", targets: ["StoreBench"]),
        .executable(name: "engine-bench", targets: ["EngineBench"]),
        .executable(name: "example-app", targets: ["ExampleApp"]),
        // The example Swift plugin: libExampleMigrations.so.
        .library(name: "ExampleMigrations", type: .dynamic, targets: ["ExampleMigrations"]),
        // The Swift side of bench/data-bench.sh: libBenchMigrations.so.
        .library(name: "BenchMigrations", type: .dynamic, targets: ["BenchMigrations"]),
    ],
    targets: [
        // Debian's liblmdb-dev, found through pkg-config.
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        // Debian's libssl-dev (libcrypto), for SHA-256 of plugin files.
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // Debian's libpq-dev: the PostgreSQL client library, for the server backend.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // Debian's libcurl4-openssl-dev: HTTPS for bundles fetched by URL (--from https://…).
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // Linux calls and constants Glibc does not import: OFD locks, memfds, the sandbox, signals.
        .target(name: "_MigratorCShims"),
        // The embedded JSON document store over LMDB.
        .target(name: "DocumentStore", dependencies: ["CLMDB", "CCrypto"]),
        // The same document store on PostgreSQL: collections as JSONB tables.
        .target(name: "PostgresStore", dependencies: ["DocumentStore", "CLibPQ"]),
        // The plugin C ABI: include/migrator_plugin.h, the durable contract.
        .target(name: "MigratorPluginABI"),
        // The Swift SDK plugin authors (and embedding apps) write migrations with.
        .target(name: "MigrationKit", dependencies: ["MigratorPluginABI"]),
        // Catalog, loader, planner, runner, the storage and source seams; no backend but LMDB's.
        .target(name: "MigrationEngine", dependencies: ["DocumentStore", "MigrationKit", "MigratorPluginABI", "CCrypto", "CCurl", "_MigratorCShims"]),
        // The PostgreSQL storage driver (PostgresStorageDriver.register()).
        .target(name: "PostgresDriver", dependencies: ["MigrationEngine", "PostgresStore", "DocumentStore", "MigrationKit"]),
        // Argument parsing and commands; the executable only calls into it.
        .target(name: "MigratorCLI", dependencies: ["DocumentStore", "MigrationEngine", "PostgresDriver"]),
        .executableTarget(name: "migrator", dependencies: ["MigratorCLI"]),
        // Example Swift plugin; exports only migrator_plugin_entry_v1.
        .target(
            name: "ExampleMigrations",
            dependencies: ["MigrationKit"],
            path: "Plugins-Examples/swift-plugin/Sources/ExampleMigrations",
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(root)/Plugins-Examples/swift-plugin/exports.map"])]
        ),
        // Example app: in-process migration, auto-migrate, health endpoint.
        .executableTarget(name: "ExampleApp", dependencies: ["MigrationEngine", "MigrationKit"], path: "Plugins-Examples/app"),
        .target(
            name: "BenchMigrations",
            dependencies: ["MigrationKit"],
            path: "bench/SwiftPlugin",
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(root)/Plugins-Examples/swift-plugin/exports.map"])]
        ),
        // Release-build benchmark driven by bench/store-bench.sh.
        .executableTarget(name: "StoreBench", dependencies: ["DocumentStore"], path: "bench/StoreBench"),
        // The in-process versus worker comparison in bench/engine-bench.sh.
        .executableTarget(name: "EngineBench", dependencies: ["MigrationEngine"], path: "bench/EngineBench"),
        // Fixture helpers shared by the test targets (C plugins built on the fly).
        .target(name: "TestSupport", dependencies: ["DocumentStore", "PostgresStore", "PostgresDriver"], path: "Tests/TestSupport"),
        // Fuzz targets (internal APIs, hence debug builds only) and the
        // libFuzzer driver / corpus replayer; see scripts/fuzz.sh.
        .target(name: "FuzzTargets", dependencies: ["DocumentStore", "MigrationEngine", "MigratorCLI", "MigrationKit", "MigratorPluginABI"],
                path: "Tests/Fuzz/FuzzTargets"),
        .executableTarget(name: "Fuzzer", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/Fuzzer",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        // The store's tests; the backend-neutral suites run on LMDB and on PostgreSQL.
        .testTarget(name: "DocumentStoreTests", dependencies: ["DocumentStore", "PostgresStore", "TestSupport"]),
        .testTarget(name: "PostgresStoreTests", dependencies: ["DocumentStore", "PostgresStore", "TestSupport"]),
        // `migrator` serves as the worker process in the isolation tests.
        .testTarget(name: "MigrationEngineTests", dependencies: ["DocumentStore", "PostgresStore", "PostgresDriver", "MigrationEngine", "MigrationKit", "MigratorPluginABI", "TestSupport", "migrator"]),
        .testTarget(name: "MigratorCLITests", dependencies: ["migrator", "PostgresStore", "DocumentStore", "TestSupport"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzTargets", "TestSupport"], path: "Tests/Fuzz/RegressionTests"),
    ],
    swiftLanguageModes: [.v6]
)
