import Foundation
// swift-tools-version:6.0
// Standalone build of the example Swift plugin. Inside this repository the
// root package builds the same sources as its ExampleMigrations product;
// this manifest is for copying the folder out as the start of your own
// plugin: point the dependency at your migrator checkout (or its git URL),
// rename MyMigrations, then `swift build -c release` gives
// .build/release/libMyMigrations.so. (Target names must differ from the
// migrator package's own, hence not ExampleMigrations.)
import PackageDescription

let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path

let package = Package(
    name: "MyMigrations",
    products: [
        .library(name: "MyMigrations", type: .dynamic, targets: ["MyMigrations"])
    ],
    dependencies: [
        .package(name: "migrator", path: "../..")
    ],
    targets: [
        .target(
            name: "MyMigrations",
            dependencies: [.product(name: "MigrationKit", package: "migrator")],
            path: "Sources/ExampleMigrations",
            // Export only migrator_plugin_entry_v1.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(here)/exports.map"])]
        )
    ],
    swiftLanguageModes: [.v6]
)
