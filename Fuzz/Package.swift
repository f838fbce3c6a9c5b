// swift-tools-version:6.0
// libFuzzer targets for mxresolved's parsers of untrusted input. A package of its own, so the
// normal build and `swift test` never compile them; scripts/fuzz builds it with
// `--sanitize=fuzzer` (coverage + libFuzzer's main) and AddressSanitizer, then runs each target.
import PackageDescription

let package = Package(
    name: "mxresolved-fuzz",
    dependencies: [.package(name: "mxresolved", path: "..")],
    targets: [
        // Property checks shared by the targets: a failed check aborts, so libFuzzer saves the input.
        .target(name: "FuzzCheck"),
        .executableTarget(name: "fuzz-server-name", dependencies: [
            "FuzzCheck", .product(name: "MXCore", package: "mxresolved"),
        ]),
        .executableTarget(name: "fuzz-dns-message", dependencies: [
            "FuzzCheck", .product(name: "MXAdapters", package: "mxresolved"),
        ]),
        .executableTarget(name: "fuzz-well-known", dependencies: [
            "FuzzCheck", .product(name: "MXCore", package: "mxresolved"),
        ]),
        .executableTarget(name: "fuzz-request-line", dependencies: [
            "FuzzCheck", .product(name: "MXProtocol", package: "mxresolved"),
        ]),
        .executableTarget(name: "fuzz-http-headers", dependencies: [
            "FuzzCheck", .product(name: "MXCore", package: "mxresolved"),
            .product(name: "MXAdapters", package: "mxresolved"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
