// swift-tools-version: 6.0
// Swift 6 language mode: strict concurrency checking is on for every target.
import PackageDescription

let package = Package(
    name: "nclav",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "nclav", targets: ["nclav"])
    ],
    dependencies: [
        // Exact versions: this machine resolves only from its local package copies.
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", exact: "1.8.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", exact: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", exact: "1.8.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
        // Hummingbird's own; named so the server can import NIOCore and NIOHTTP1 directly.
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", exact: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
    ],
    targets: [
        // Domain value types, identifiers, templates. No I/O, no dependencies.
        .target(name: "NclavCore"),
        // The HTTP API's contract: every request, response and stream-event type and every
        // route path, shared by the server and the client so neither can drift from the other.
        .target(name: "NclavAPI", dependencies: ["NclavCore"]),
        // Reads an enclaves directory from disk under one set of rules (links, hidden names,
        // state files, depth, unreadable entries), shared by validation, fingerprints, the
        // CLI's upload and workspace mirroring.
        .target(name: "NclavFiles"),
        // YAML → domain: discovery, strict decoding with file:line:col, whole-tree validation.
        .target(
            name: "NclavConfig",
            dependencies: [
                "NclavCore", "NclavFiles",
                .product(name: "Yams", package: "Yams"),
            ]),
        // What nclav keeps, as protocols (Terraform states and locks; orchestration records),
        // the decision rules every store applies, record coding, and the in-memory store.
        .target(name: "NclavStore", dependencies: ["NclavCore"]),
        // The embedded store: SQLite through GRDB, state bodies of 64 KB or more as files.
        .target(
            name: "NclavSQLite",
            dependencies: [
                "NclavCore", "NclavStore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        // The PostgreSQL StateStore for hosted, multi-replica deployments (postgres-nio pool).
        .target(
            name: "NclavPostgres",
            dependencies: [
                "NclavCore", "NclavStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // What the engine asks of a cloud, and what every cloud driver shares: the `Driver`
        // protocol, the registry and the local driver, capped backoff, and one HTTP exchange
        // with a cloud API over AsyncHTTPClient. Cloud modules depend on this, never on the engine.
        .target(
            name: "NclavDrivers",
            dependencies: [
                "NclavCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        // The AWS driver: SigV4, the credential chain, endpoint resolution, the JSON/query/REST-XML
        // calls it makes (Organizations, STS, EC2, IAM, Route 53, Tagging) over AsyncHTTPClient.
        .target(
            name: "NclavAWS",
            dependencies: [
                "NclavCore", "NclavDrivers",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),
        // The GCP driver: credentials (service-account key JWT, ADC refresh token, metadata
        // server), Resource Manager / Billing / Service Usage / IAM / Compute / DNS / Cloud Asset
        // over REST with long-running-operation polling.
        .target(
            name: "NclavGCP",
            dependencies: [
                "NclavCore", "NclavDrivers",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]),
        // The Azure driver: credentials (service principal, managed identity, az CLI), subscription
        // aliases under an MCA billing scope, ARM resources and long-running operations, Resource Graph.
        .target(
            name: "NclavAzure",
            dependencies: [
                "NclavCore", "NclavDrivers",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]),
        // The admin token (env, file, rotation) and per-run credentials scoped to one state.
        .target(
            name: "NclavAuth",
            dependencies: [
                "NclavCore",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // Partition dependency graph and (later) planner + reconciler + driver registry.
        .target(
            name: "Orchestrator",
            dependencies: [
                "NclavCore", "NclavDrivers", "NclavConfig", "IacRunner", "NclavStore", "NclavAuth", "TFBackend",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // Workspace rendering and the terraform/tofu process runner (swift-subprocess).
        .target(
            name: "IacRunner",
            dependencies: [
                "NclavCore", "NclavFiles",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        // Terraform HTTP state protocol rules over a StateStore: documents, locks, versions.
        .target(
            name: "TFBackend",
            dependencies: [
                "NclavCore", "NclavStore", "NclavAuth",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The HTTP API and state backend served by `nclav serve` (Hummingbird).
        .target(
            name: "NclavServer",
            dependencies: [
                "NclavCore", "NclavAPI", "NclavFiles", "NclavStore", "NclavSQLite", "NclavPostgres", "NclavAuth", "TFBackend", "Orchestrator",
                "NclavDrivers",
                "NclavConfig", "IacRunner",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], plugins: ["EmbedBootstrapModules"]),
        // The typed HTTP client the CLI uses to talk to a server.
        .target(
            name: "NclavClient",
            dependencies: [
                "NclavCore", "NclavAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        // The bootstrap/<cloud> modules, embedded in the binary at build time by a plugin.
        .target(name: "PlatformTemplates", plugins: ["EmbedBootstrapModules"]),
        // Build-time only: the plugin and the tool it runs to turn bootstrap/ into Swift source.
        .plugin(name: "EmbedBootstrapModules", capability: .buildTool(), dependencies: ["embed-templates"]),
        .executableTarget(name: "embed-templates", path: "Sources/EmbedTemplates"),
        // The client commands (status, validate, diff, apply, destroy, graph, iac, state, drift,
        // orphans): parse, call the typed client, print. They know the API, never the server.
        .target(
            name: "NclavCLI",
            dependencies: [
                "NclavAPI", "NclavClient", "NclavConfig", "NclavFiles", "NclavCore", "IacRunner", "NclavAuth",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The executable: the root command, `serve` and the platform commands, which run the
        // server side in this process.
        .executableTarget(
            name: "nclav",
            dependencies: [
                "NclavCLI", "NclavServer", "NclavStore", "NclavDrivers", "PlatformTemplates", "IacRunner", "NclavAWS", "NclavGCP", "NclavAzure",
                "NclavCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Fixture paths, scratch directories and real-process helpers for the test targets.
        .target(name: "NclavTestSupport", dependencies: ["NclavCore", "NclavStore", "NclavSQLite", "NclavAuth"], path: "Tests/NclavTestSupport"),
        // In-test servers speaking cloud APIs' wire formats (for clouds no emulator covers).
        .target(
            name: "NclavCloudFakes",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ], path: "Tests/CloudFakes"),
        .testTarget(name: "NclavGCPTests", dependencies: ["NclavGCP", "NclavDrivers", "NclavCore", "NclavCloudFakes", "NclavTestSupport"]),
        .testTarget(name: "NclavAzureTests", dependencies: ["NclavAzure", "NclavDrivers", "NclavCore", "NclavCloudFakes", "NclavTestSupport"]),
        .testTarget(name: "NclavCoreTests", dependencies: ["NclavCore"]),
        .testTarget(
            name: "NclavAWSTests",
            dependencies: [
                "NclavAWS", "NclavDrivers", "NclavCore", "NclavTestSupport", "NclavCloudFakes",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "NclavDriversTests", dependencies: ["NclavDrivers", "NclavCore"]),
        .testTarget(
            name: "OrchestratorTests",
            dependencies: [
                "Orchestrator", "NclavDrivers", "NclavConfig", "NclavCore", "NclavTestSupport", "NclavStore", "NclavSQLite", "IacRunner", "NclavAuth",
                "TFBackend", "NclavPostgres", "nclav",
            ]),
        .testTarget(name: "IacRunnerTests", dependencies: ["IacRunner", "NclavCore", "NclavTestSupport", "NclavAuth", "nclav"]),
        // Test helper process for the store's kill -9 durability test.
        .executableTarget(
            name: "nclav-store-writer", dependencies: ["NclavStore", "NclavSQLite", "NclavCore", "NclavTestSupport"], path: "Tests/StoreWriter"),
        .testTarget(
            name: "NclavStoreTests",
            dependencies: ["NclavStore", "NclavSQLite", "NclavPostgres", "NclavCore", "NclavTestSupport", "nclav-store-writer"]),
        .testTarget(name: "NclavAuthTests", dependencies: ["NclavAuth", "NclavCore", "NclavTestSupport"]),
        .testTarget(name: "TFBackendTests", dependencies: ["TFBackend", "NclavStore", "NclavCore", "NclavAuth", "NclavTestSupport"]),
        // A real `nclav serve` over loopback, driven by HTTP and by the real terraform binary.
        .testTarget(
            name: "NclavServerTests",
            dependencies: [
                "nclav", "NclavTestSupport", "NclavCore", "NclavAPI", "NclavAuth", "NclavServer", "NclavStore", "NclavSQLite", "TFBackend",
                "NclavAWS", "NclavCloudFakes",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        .testTarget(name: "NclavConfigTests", dependencies: ["NclavConfig", "NclavCore", "NclavFiles", "NclavTestSupport"]),
        // Runs the built `nclav` binary as a real process.
        .testTarget(name: "NclavCLITests", dependencies: ["nclav", "NclavTestSupport"]),
    ]
)
