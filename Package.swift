// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "migrator",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "DocumentStore", targets: ["DocumentStore"]),
        .library(name: "MigratorCLI", targets: ["MigratorCLI"]),
        .executable(name: "migrator", targets: ["migrator"]),
        .executable(name: "store-bench", targets: ["StoreBench"]),
    ],
    targets: [
        // Debian's liblmdb-dev, found through pkg-config.
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        // The embedded JSON document store over LMDB.
        .target(name: "DocumentStore", dependencies: ["CLMDB"]),
        // Argument parsing and commands; the executable only calls into it.
        .target(name: "MigratorCLI", dependencies: ["DocumentStore"]),
        .executableTarget(name: "migrator", dependencies: ["MigratorCLI"]),
        // Release-build benchmark driven by bench/store-bench.sh.
        .executableTarget(name: "StoreBench", dependencies: ["DocumentStore"], path: "bench/StoreBench"),
        .testTarget(name: "DocumentStoreTests", dependencies: ["DocumentStore"]),
        .testTarget(name: "MigratorCLITests", dependencies: ["migrator"]),
    ],
    swiftLanguageModes: [.v6]
)
