import Foundation
import XCTest
import MXTestSupport
import MXResolve
import MXProtocol

/// mxresolved's --version, man page and shell completions, from the real binary, read by the real
/// tools (groff, bash, zsh, fish).
final class DaemonReferenceTests: XCTestCase {
    var daemon: String { DaemonProcess.daemonBinary }

    func testVersionIsTheWireVersion() throws {
        let (status, out, _) = try runCommand(daemon, ["--version"])
        XCTAssertEqual(status, 0)
        XCTAssertEqual(out, Wire.serverVersion + "\n")
        let (ctlStatus, ctlOut, _) = try runCommand(DaemonProcess.ctlBinary, ["--version"])
        XCTAssertEqual(ctlStatus, 0)
        XCTAssertEqual(ctlOut, Wire.serverVersion + "\n")
    }

    /// The page renders without a groff warning and documents every setting as a flag and SIGHUP.
    func testManualListsEverySettingAndRendersCleanly() throws {
        let (status, generated, _) = try runCommand(daemon, ["--generate-manual"])
        XCTAssertEqual(status, 0)
        // As scripts/package installs it: the hand-written sections follow.
        let page = generated + (try String(contentsOfFile: "\(TestWorld.repoRoot)/dist/man/mxresolved.8.in", encoding: .utf8))
        let path = NSTemporaryDirectory() + "mxresolved-\(getpid()).8"
        try page.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (groff, _, warnings) = try runCommand("/usr/bin/groff", ["-mandoc", "-ww", "-z", path])
        XCTAssertEqual(groff, 0)
        XCTAssertEqual(warnings, "", "groff warnings")
        let (_, text, _) = try runCommand("/usr/bin/man", ["-l", "-P", "cat", path], env: ["MANWIDTH": "250"])
        for setting in DaemonConfig.settings {
            XCTAssertTrue(text.contains("--\(setting.key) \(setting.valueName)"), "man page lists --\(setting.key)")
            XCTAssertTrue(text.contains(setting.helpWithDefault), "man page has the help of --\(setting.key)")
        }
        XCTAssertTrue(text.contains("SIGHUP"))
        XCTAssertTrue(text.contains("SocketGroup=matrix-synapse"))
    }

    func testBashCompletesFlagsAndLogLevels() throws {
        let script = try completionScript("bash")
        XCTAssertEqual(try bashComplete(script, ["mxresolved", "--dns-s"]), ["--dns-server"])
        XCTAssertEqual(try bashComplete(script, ["mxresolved", "--log-level", "w"]), ["warning"])
        XCTAssertEqual(try bashComplete(script, ["mxresolved", "--dns-tries", ""]), [], "a number: nothing to offer")
        let all = try bashComplete(script, ["mxresolved", "--"])
        XCTAssertEqual(Set(all), Set(DaemonConfig.keys.map { "--\($0)" } + ["--config", "--dump-config", "--verify-cache", "--version", "--help"]))
    }

    func testFishCompletesFlagsAndLogLevels() throws {
        let path = NSTemporaryDirectory() + "mxresolved-\(getpid()).fish"
        try completionScript("fish").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, out, err) = try runCommand("/usr/bin/fish", ["--no-config", "-c",
            "source \(path); complete -C 'mxresolved --log-level cr'; complete -C 'mxresolved --memory-c'"])
        XCTAssertEqual(status, 0, err)
        let words = out.split(separator: "\n").map { $0.split(separator: "\t")[0] }
        XCTAssertEqual(words, ["critical", "--memory-cache-entries"])
    }

    func testZshCompletionParses() throws {
        let path = NSTemporaryDirectory() + "_mxresolved-\(getpid())"
        let script = try completionScript("zsh")
        XCTAssertTrue(script.hasPrefix("#compdef mxresolved\n"))
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, _, err) = try runCommand("/usr/bin/zsh", ["-n", path])
        XCTAssertEqual(status, 0, err)
        for key in DaemonConfig.keys { XCTAssertTrue(script.contains("--\(key)["), "zsh completes --\(key)") }
    }

    func testUnknownShellIsAUsageError() throws {
        let (status, _, err) = try runCommand(daemon, ["--generate-completion-script", "tcsh"])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(err.contains("bash, zsh, fish"), err)
    }

    func completionScript(_ shell: String) throws -> String {
        let (status, script, err) = try runCommand(daemon, ["--generate-completion-script", shell])
        XCTAssertEqual(status, 0, err)
        return script
    }

    /// What bash's completion function offers for `words`, the cursor at the end of the last.
    func bashComplete(_ script: String, _ words: [String]) throws -> [String] {
        let quoted = words.map { "'\($0)'" }.joined(separator: " ")
        let (status, out, err) = try runCommand("/bin/bash", ["-c", """
            \(script)
            COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1)
            _mxresolved; printf '%s\\n' "${COMPREPLY[@]}"
            """])
        XCTAssertEqual(status, 0, err)
        return out.split(separator: "\n").map(String.init)
    }
}
