import Foundation
import XCTest
import MXResolve

/// The packaged configuration must stay loadable as the daemon evolves.
final class PackagingTests: XCTestCase {
    func testShippedConfigFileLoads() throws {
        let text = try String(contentsOfFile: "\(TestWorld.repoRoot)/dist/mxresolved.conf", encoding: .utf8)
        var c = DaemonConfig()
        try c.load(file: text, path: "dist/mxresolved.conf")
        XCTAssertEqual(c.socketPath, "/run/mxresolved/socket")
        XCTAssertEqual(c.stateDir, "/var/lib/mxresolved")
        XCTAssertEqual(c.socketMode, 0o660)
    }
}
