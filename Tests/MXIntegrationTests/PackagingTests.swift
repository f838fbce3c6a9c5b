import Foundation
import XCTest
import MXTestSupport
import MXResolve

/// The packaged configuration must stay loadable as the daemon evolves, and stay what the
/// settings table generates.
final class PackagingTests: XCTestCase {
    func testShippedConfigFileLoadsAndIsTheGeneratedOne() throws {
        let text = try String(contentsOfFile: "\(TestWorld.repoRoot)/dist/mxresolved.conf", encoding: .utf8)
        var c = DaemonConfig()
        try c.load(file: text, path: "dist/mxresolved.conf")
        XCTAssertEqual(c.socketPath, "/run/mxresolved/socket")
        XCTAssertEqual(c.stateDir, "/var/lib/mxresolved")
        XCTAssertEqual(c.socketMode, 0o660)
        XCTAssertEqual(text, c.configFile, """
            dist/mxresolved.conf differs from what the settings table generates; regenerate it with
            mxresolved --config dist/mxresolved.conf --dump-config > /tmp/c && mv /tmp/c dist/mxresolved.conf
            """)
    }

    /// README's configuration table is written by hand; its keys must be settings.
    func testREADMEConfigurationTableNamesOnlyRealKeys() throws {
        let readme = try String(contentsOfFile: "\(TestWorld.repoRoot)/README.md", encoding: .utf8)
        let section = try XCTUnwrap(readme.components(separatedBy: "## Configuration").dropFirst().first)
            .components(separatedBy: "\n## ")[0]
        let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `") }
        XCTAssertFalse(rows.isEmpty)
        for row in rows {
            let firstCell = row.split(separator: "|")[0]
            let keys = firstCell.split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            XCTAssertFalse(keys.isEmpty, String(row))
            for key in keys { XCTAssertTrue(DaemonConfig.keys.contains(key), "README names '\(key)', which is not a setting") }
        }
    }

    /// The daemon reads JSON and files without Foundation, whose libraries (and ICU's) would cost
    /// megabytes of resident memory in every daemon process.
    func testDaemonLinksNeitherFoundationNorICU() throws {
        let (status, out, err) = try runCommand("/usr/bin/readelf", ["-d", DaemonProcess.daemonBinary])
        XCTAssertEqual(status, 0, err)
        let needed = out.split(separator: "\n").filter { $0.contains("(NEEDED)") }
        XCTAssertFalse(needed.isEmpty, out)
        for library in needed {
            XCTAssertFalse(library.contains("Foundation") || library.contains("icu"), String(library))
        }
    }
}
