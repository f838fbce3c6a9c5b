// swift-tools-version:6.0
// mxresolved: a sidecar daemon that resolves Matrix server names for homeserver workers
// and keeps one shared, persistent cache of the answers.
import PackageDescription

let package = Package(
    name: "mxresolved",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mxresolved", targets: ["mxresolved"]),
        .executable(name: "mxresolvectl", targets: ["mxresolvectl"]),
        .library(name: "MXResolve", targets: ["MXResolve"]),
        .library(name: "MXProtocol", targets: ["MXProtocol"]),
        // For the fuzz targets (Fuzz/Package.swift), which reach the parsers through these.
        .library(name: "MXCore", targets: ["MXCore"]),
        .library(name: "MXAdapters", targets: ["MXAdapters"]),
    ],
    dependencies: [
        // swift-log: the daemon's one logging API (stderr lines for journald).
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // swift-argument-parser: mxresolvectl's subcommands (mxresolved's flags come from its settings table).
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Thin system-library targets: a module map and a header of static inline shims each.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"]), .brew(["curl"])]),
        .systemLibrary(name: "CAres", pkgConfig: "libcares",
                       providers: [.apt(["libc-ares-dev"]), .brew(["c-ares"])]),
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb",
                       providers: [.apt(["liblmdb-dev"]), .brew(["lmdb"])]),
        // The trust store shared by libcurl's TLS contexts (the OpenSSL libcurl is built with).
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]),
        // epoll, eventfd, mallopt and thread names, which Glibc's module does not export.
        .systemLibrary(name: "CLinux"),

        // Pure core: server-name grammar, the spec's algorithm, cache policy. No I/O, no C.
        .target(name: "MXCore"),

        // Adapters: c-ares DNS client and libcurl well-known fetcher on I/O threads (DNS on the first,
        // fetches on all), trust store, LMDB store, the Dispatch scheduler and the thread helper.
        .target(name: "MXAdapters", dependencies: ["MXCore", "CCurl", "CAres", "CLMDB", "CLinux", "COpenSSL"]),

        // The socket protocol (proto/PROTOCOL.md): verbs, error codes, request and response lines,
        // the socket path order and the blocking control client. No Foundation, no core.
        .target(name: "MXProtocol"),

        // `mxresolvectl check`: what a remote homeserver does with an answer (TLS with its SNI, the
        // certificate, the version and signed-keys endpoints), judged with hints for the usual mistakes.
        .target(name: "MXCheck", dependencies: ["MXCore", "MXAdapters", "MXProtocol", "COpenSSL"]),

        // Answers and cache entries as protocol lines and JSON (the daemon; mxresolvectl reading LMDB).
        .target(name: "MXRender", dependencies: ["MXCore", "MXProtocol"]),

        // The resolving service: cache + single-flight + refresh over the adapters, the socket
        // protocol and server, configuration and statistics.
        .target(name: "MXResolve", dependencies: [
            "MXCore", "MXAdapters", "MXProtocol", "MXRender", "CLinux",
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(name: "mxresolved", dependencies: [
            "MXResolve", "MXProtocol",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "mxresolvectl", dependencies: [
            "MXProtocol", "MXCore", "MXAdapters", "MXCheck", "MXRender",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "MXCoreTests", dependencies: ["MXCore"]),
        // What the test targets share: the loopback test world, a daemon process, running commands.
        .target(name: "MXTestSupport", dependencies: ["MXCore", "MXAdapters", "MXProtocol", "MXResolve"], path: "Tests/MXTestSupport"),
        .testTarget(name: "MXAdaptersTests", dependencies: ["MXCore", "MXAdapters", "CLMDB", "MXTestSupport"]),
        .testTarget(name: "MXProtocolTests", dependencies: ["MXProtocol"]),
        .testTarget(name: "MXCheckTests", dependencies: ["MXCheck", "MXCore", "MXTestSupport"]),
        .testTarget(name: "MXIntegrationTests", dependencies: ["MXCore", "MXAdapters", "MXProtocol", "MXResolve", "MXTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
