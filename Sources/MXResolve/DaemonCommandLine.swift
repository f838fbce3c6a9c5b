/// The `mxresolved` command line: `--config FILE`, then `--KEY VALUE` or `--KEY=VALUE` for any
/// setting of `DaemonConfig.settings`; flags override the file. `--dump-config` prints the
/// settings in effect as a config file; `--help` lists every setting with its default.
public enum DaemonCommandLine {
    public enum Action: Equatable {
        case run(DaemonConfig)
        case dumpConfig(DaemonConfig)
        /// Walk the cache in a directory, print the verdict, exit 0 (sound) or 1 (damaged); the
        /// daemon runs itself this way to verify a cache without risking its own process.
        case verifyCache(directory: String)
        case help
        case version
        case manual
        case completionScript(shell: String)
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case usage(String)
        case config(DaemonConfig.Problem)

        public var description: String {
            switch self {
            case .usage(let message): return "\(message) (see mxresolved --help)"
            case .config(let problem): return problem.description
            }
        }
    }

    /// `arguments` without the program name. `readFile` returns a file's text, nil if unreadable.
    public static func parse(_ arguments: [String], readFile: (String) -> String?) throws(Failure) -> Action {
        var configPath: String?
        var dump = false
        var flags: [(setting: Setting, value: String)] = []
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == "-h" || argument == "--help" { return .help }
            if argument == "--version" { return .version }
            if argument == "--generate-manual" { return .manual }
            if argument == "--generate-completion-script" {
                guard let shell = rest.popFirst(), DaemonReference.shells.contains(shell) else {
                    throw .usage("--generate-completion-script needs one of \(DaemonReference.shells.joined(separator: ", "))")
                }
                return .completionScript(shell: shell)
            }
            if argument == "--dump-config" { dump = true; continue }
            if argument == "--verify-cache" {
                guard let directory = rest.popFirst() else { throw .usage("--verify-cache needs a directory") }
                return .verifyCache(directory: directory)
            }
            guard argument.hasPrefix("--") else { throw .usage("unexpected argument '\(argument.prefix(100))'") }
            var name = String(argument.dropFirst(2))
            var value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard name == "config" || DaemonConfig.setting(name) != nil else {
                throw .usage("unknown option '--\(name.prefix(100))'")
            }
            if value == nil { value = rest.popFirst() }
            guard let value else { throw .usage("--\(name) needs a value") }
            if name == "config" { configPath = value } else { flags.append((DaemonConfig.setting(name)!, value)) }
        }

        var config = DaemonConfig()
        do throws(DaemonConfig.Problem) {
            if let path = configPath {
                guard let text = readFile(path) else { throw DaemonConfig.Problem(key: "config", reason: "cannot read '\(path)'") }
                try config.load(file: text, path: path)
            }
            var replaced: Set<String> = []
            for (setting, value) in flags {
                if setting.repeats == .yes(flagsReplaceFile: true), replaced.insert(setting.key).inserted {
                    setting.clear(&config)
                }
                try config.set(setting.key, value)
            }
        } catch {
            throw .config(error)
        }
        return dump ? .dumpConfig(config) : .run(config)
    }

    public static let helpText: String = {
        let options = DaemonReference.allFlags.map { flag, valueName, help in
            (flag == "help" ? "-h, --help" : "--\(flag)" + (valueName.map { " <\($0)>" } ?? ""), help)
        }
        let column = 36
        var out = """
        OVERVIEW: Resolve Matrix server names for homeserver workers, with one shared persistent cache.

        Every option is also a key of the config file (--config), written `key = value`, one per line, `#` for
        comments; repeatable keys repeat. Flags override the file. Without any option the daemon listens on
        ./.mxresolved/mxresolved.sock and keeps its cache in ./.mxresolved/cache.

        USAGE: mxresolved [--config <FILE>] [--<KEY> <VALUE> ...] [--dump-config]

        OPTIONS:

        """
        for (flag, help) in options {
            let lines = DaemonConfig.wrap(help, width: 104 - column)
            let head = "  " + flag
            if head.count < column {
                out += head.padding(toLength: column) + (lines.first ?? "") + "\n"
                for line in lines.dropFirst() { out += String(repeating: " ", count: column) + line + "\n" }
            } else {
                out += head + "\n"
                for line in lines { out += String(repeating: " ", count: column) + line + "\n" }
            }
        }
        return out
    }()
}

private extension String {
    func padding(toLength length: Int) -> String { self + String(repeating: " ", count: max(0, length - count)) }
}
