// swift-tools-version: 6.0
// Swift 6 language mode: strict concurrency checking is on for every target.
import PackageDescription

let package = Package(
    name: "nclav",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "nclav", targets: ["nclav"]),
    ],
    dependencies: [
        // Exact versions: this machine resolves only from its local package copies.
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
    ],
    targets: [
        // Domain value types, identifiers, templates. No I/O, no dependencies.
        .target(name: "NclavCore"),
        // YAML → domain: discovery, strict decoding with file:line:col, whole-tree validation.
        .target(name: "NclavConfig", dependencies: [
            "NclavCore",
            .product(name: "Yams", package: "Yams"),
        ]),
        // Partition dependency graph and (later) planner + reconciler + driver registry.
        .target(name: "Orchestrator", dependencies: ["NclavCore", "NclavConfig"]),
        // Workspace rendering and (later) the terraform/tofu process runner.
        .target(name: "IacRunner", dependencies: ["NclavCore"]),
        // Terraform HTTP state protocol rules (state documents, later locks and versions).
        .target(name: "TFBackend", dependencies: ["NclavCore"]),
        // Bootstrap modules embedded in the binary (issue 6; not built yet).
        .target(name: "PlatformTemplates"),
        // The executable: argument parsing and output only; logic lives in the libraries.
        .executableTarget(name: "nclav", dependencies: [
            "NclavConfig",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Fixture paths, scratch directories and real-process helpers for the test targets.
        .target(name: "NclavTestSupport", path: "Tests/NclavTestSupport"),
        .testTarget(name: "NclavCoreTests", dependencies: ["NclavCore"]),
        .testTarget(name: "NclavConfigTests", dependencies: ["NclavConfig", "NclavCore", "NclavTestSupport"]),
        // Runs the built `nclav` binary as a real process.
        .testTarget(name: "NclavCLITests", dependencies: ["nclav", "NclavTestSupport"]),
    ]
)
