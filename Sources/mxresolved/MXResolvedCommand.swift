import Logging
import MXResolve
import MXAdapters
import MXProtocol
#if canImport(Glibc)
import Glibc
#endif

/// `mxresolved`: reads its settings (DaemonCommandLine), then runs the daemon until SIGTERM.
@main
enum MXResolvedCommand {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let action: DaemonCommandLine.Action
        do {
            action = try DaemonCommandLine.parse(arguments, readFile: readFile)
        } catch {
            writeStderr("mxresolved: \(error)\n")
            exit(2)
        }
        switch action {
        case .help:
            print(DaemonCommandLine.helpText, terminator: "")
        case .version:
            print(Wire.serverVersion)
        case .manual:
            print(DaemonReference.manual(date: today()), terminator: "")
        case .completionScript(let shell):
            print(DaemonReference.completionScript(shell: shell) ?? "", terminator: "")
        case .dumpConfig(let config):
            print(config.configFile, terminator: "")
        case .verifyCache(let directory):
            let verdict = LMDBStore.verify(directory: directory)
            print(verdict)
            exit(verdict.isSound ? 0 : 1)
        case .run(let config):
            run(config, arguments: arguments)
        }
    }

    static func run(_ config: DaemonConfig, arguments: [String]) -> Never {
        Daemon.blockHandledSignals()
        let level = LogLevelSwitch(Logger.Level(rawValue: config.logLevel) ?? .info)
        let format = DaemonLogHandler.detectFormat()
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, format: format, level: level) }
        let logger = Logger(label: "mxresolved")
        let daemon: Daemon
        do {
            daemon = try Daemon(config: config, logger: logger, logLevel: level, reread: {
                guard case .run(let config) = try DaemonCommandLine.parse(arguments, readFile: readFile) else {
                    throw DaemonCommandLine.Failure.usage("the command line no longer runs the daemon")
                }
                return config
            })
        } catch {
            writeStderr("mxresolved: \(error)\n")
            exit(1)
        }
        daemon.run()
    }

    /// "November 29, 2026", the man page's date.
    static func today() -> String {
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                      "October", "November", "December"]
        var now = time(nil)
        var local = tm()
        localtime_r(&now, &local)
        return "\(months[Int(local.tm_mon)]) \(local.tm_mday), \(local.tm_year + 1900)"
    }

    static func readFile(_ path: String) -> String? {
        readTextFile(path)
    }

    static func writeStderr(_ s: String) {
        let bytes = Array(s.utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
