import XCTest
import Foundation
import Synchronization
import MXCore
import MXTestSupport
@testable import MXAdapters

/// The one trust store every TLS context shares (`TrustStore`), against the real nginx of
/// `NetworkBackendTests`' world: libcurl loads no CA itself, so a fetch that verifies proves the
/// store was handed over; a changed CA file is picked up without a restart; a broken one is
/// refused at start-up and, at run time, leaves the last good store in place.
extension NetworkBackendTests {
    private final class FakeClock: Sendable {
        let ms = Atomic<Int>(0)
    }

    private func scratchDirectory(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "mxresolved-trust-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// A CA that signed nothing the test world serves (openssl CLI, like the world's own CA).
    private func unrelatedCA(in dir: String) throws -> String {
        let (status, out, err) = try runCommand("/usr/bin/openssl", ["req", "-x509", "-batch", "-newkey", "ec",
                                                "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                                                "-keyout", dir + "/other.key", "-out", dir + "/other.pem",
                                                "-subj", "/CN=unrelated test CA"])
        XCTAssertEqual(status, 0, out + err)
        return dir + "/other.pem"
    }

    /// Replaces `path` the way deployments do (write aside, rename over): a new inode.
    private func replace(_ path: String, with contents: Data) throws {
        try contents.write(to: URL(fileURLWithPath: path + ".new"))
        XCTAssertEqual(rename(path + ".new", path), 0)
    }

    private func contents(_ path: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path))
    }

    func testFetchesOnEveryThreadShareOneStore() async throws {
        let w = try requireWorld()
        let b = try backend { $0.ioThreads = 2 }
        for _ in 0..<4 {
            let resp = try await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress]).get()
            XCTAssertEqual(resp.status, 200)
        }
        XCTAssertEqual(b.trust.builds, 1)
        XCTAssertNil(b.trust.lastError)
    }

    func testChangedCAFileIsPickedUp() async throws {
        let w = try requireWorld()
        let dir = try scratchDirectory("reload")
        let caFile = dir + "/ca.pem"
        try replace(caFile, with: contents(w.caFile))
        let other = try unrelatedCA(in: dir)
        let b = try backend { $0.extraCAFile = caFile; $0.trustCheckIntervalMs = 0 }

        let first = try await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress]).get()
        XCTAssertEqual(first.status, 200)

        try replace(caFile, with: contents(other))
        let refused = await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress])
        guard case .failure(.tls) = refused else { return XCTFail("expected .tls with an unrelated CA, got \(refused)") }
        XCTAssertEqual(b.trust.builds, 2)

        try replace(caFile, with: contents(w.caFile))
        let again = try await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress]).get()
        XCTAssertEqual(again.status, 200)
        XCTAssertEqual(b.trust.builds, 3)

        // A file that no longer parses is reported and the last good store stays in use.
        try replace(caFile, with: Data("not a certificate\n".utf8))
        let kept = try await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress]).get()
        XCTAssertEqual(kept.status, 200)
        XCTAssertEqual(b.trust.builds, 3)
        XCTAssertTrue(b.trust.lastError?.contains(caFile) ?? false, "\(String(describing: b.trust.lastError))")
    }

    func testFilesAreCheckedAtMostOncePerInterval() throws {
        let w = try requireWorld()
        let dir = try scratchDirectory("interval")
        let caFile = dir + "/ca.pem"
        try replace(caFile, with: contents(w.caFile))
        let other = try unrelatedCA(in: dir)
        let clock = FakeClock()
        let trust = try TrustStore(caFile: caFile, caDirectory: dir, checkIntervalMs: 5000,
                                   clockMs: { clock.ms.load(ordering: .relaxed) })
        try replace(caFile, with: contents(other))
        clock.ms.store(4999, ordering: .relaxed)
        trust.checkForChanges()
        XCTAssertEqual(trust.builds, 1, "checked before the interval was over")
        clock.ms.store(5000, ordering: .relaxed)
        trust.checkForChanges()
        XCTAssertEqual(trust.builds, 2)
        clock.ms.store(60_000, ordering: .relaxed)
        trust.checkForChanges()
        XCTAssertEqual(trust.builds, 2, "rebuilt although nothing changed")
    }

    func testUnusableCAFileFailsAtStart() throws {
        let w = try requireWorld()
        let dir = try scratchDirectory("start")
        let garbage = dir + "/garbage.pem"
        try replace(garbage, with: Data("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".utf8))
        for path in [dir + "/missing.pem", garbage] {
            var c = NetworkConfig()
            c.dnsServers = [w.dnsServer]
            c.extraCAFile = path
            XCTAssertThrowsError(try NetworkBackend(config: c)) { error in
                guard case NetworkSetupError.caFile(let message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains(path), message)
            }
        }
    }
}
