import ArgumentParser
import Foundation
import MXCheck

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Why can't we federate with NAME? Resolve it through the daemon, then check every target as a remote homeserver would.",
        discussion: """
        Resolves NAME afresh through mxresolved (its DNS servers, deny list and well-known rules), fetches the \
        well-known on every address of NAME, then for every target address: TCP, TLS with the answer's SNI, the \
        certificate for the answer's TLS name, GET /_matrix/federation/v1/version and /_matrix/key/v2/server \
        (server name, validity, ed25519 signatures). Client discovery is reported as information. \
        Exit 0 when federation would work, 1 when not (see docs/check.md).
        """)
    @OptionGroup var socket: SocketOption
    @Argument(help: "Server names.") var names: [String]
    @Flag(help: "Print the report as JSON, one object per name and line.") var json = false
    @Option(help: "Extra trusted CA file (default: the daemon's ca-file, as its version answer reports it).") var caFile: String?
    @Option(help: "System CA directory (OpenSSL hashed layout).") var caDirectory: String = "/etc/ssl/certs"

    func validate() throws {
        guard !names.isEmpty else { throw ValidationError("give at least one server name") }
        guard timeout > 0, timeout <= 600 else { throw ValidationError("--timeout takes seconds in (0, 600]") }
    }

    /// Seconds each name may take at most (--timeout, shared with the other verbs' daemon wait).
    var timeout: Double { socket.givenTimeout.map(Double.init) ?? 15 }

    func run() throws {
        _ = try socket.connect()  // exit 3 with advice when the daemon is not running
        let daemon = DaemonResolver(socketPath: socket.path)
        let trust = TrustedCAs(caFile: caFile ?? daemon.caFile(), caDirectory: caDirectory)
        var failed = false
        for name in names {
            let check = FederationCheck(serverName: name, timeoutMs: Int(timeout * 1000), trust: trust, daemon: daemon,
                                        nowMs: { Int64(Date().timeIntervalSince1970 * 1000) })
            let report = check.run()
            print(json ? report.json.text : report.text)
            if !report.federationOK { failed = true }
        }
        if failed { throw Exit.failed }
    }
}
