/// The verbs of §5: the one list of what each takes, and who may send it.
public enum Verb: String, CaseIterable, Sendable {
    case hello, ping, version, resolve
    case showCache = "show-cache"
    case flushCaches = "flush-caches"
    case revalidate, reresolve, statistics
    case resetStatistics = "reset-statistics"

    /// How many positional arguments the verb takes.
    public var arguments: ClosedRange<Int> {
        switch self {
        case .hello, .resolve, .reresolve: return 1...1
        case .showCache: return 0...1
        case .flushCaches: return 0...Int.max
        case .revalidate: return 1...Int.max
        case .ping, .version, .statistics, .resetStatistics: return 0...0
        }
    }

    /// What its arguments are called in usage texts.
    public var argumentName: String? {
        switch self {
        case .hello: return "VERSIONS"
        case .resolve, .reresolve, .showCache, .flushCaches, .revalidate: return "NAME"
        case .ping, .version, .statistics, .resetStatistics: return nil
        }
    }

    /// The options it accepts besides `id`, valid on every verb.
    public var options: [RequestOption] {
        switch self {
        case .resolve: return [.cache, .trace, .format]
        case .showCache: return [.failures, .format, .after, .limit]
        case .flushCaches: return [.failures]
        case .statistics: return [.format]
        case .hello, .ping, .version, .revalidate, .reresolve, .resetStatistics: return []
        }
    }

    /// Whether it changes the daemon's state (cache, counters, upstream work it starts).
    public var changesState: Bool {
        switch self {
        case .flushCaches, .revalidate, .resetStatistics, .reresolve: return true
        case .hello, .ping, .version, .resolve, .showCache, .statistics: return false
        }
    }

    /// Whether only an admin peer (root, the daemon's uid, the admin group) may send it.
    /// `reresolve` is open to every peer: the daemon rate-limits it per name instead.
    public var adminOnly: Bool {
        switch self {
        case .flushCaches, .revalidate, .resetStatistics: return true
        case .hello, .ping, .version, .resolve, .reresolve, .showCache, .statistics: return false
        }
    }

    /// `resolve NAME [cache=yes|no] [trace=yes|no] [format=text|json]`
    public var synopsis: String {
        var parts = [rawValue]
        if let name = argumentName {
            switch (arguments.lowerBound, arguments.upperBound) {
            case (0, 1): parts.append("[\(name)]")
            case (0, _): parts.append("[\(name)...]")
            case (1, 1): parts.append(name)
            default: parts.append("\(name)...")
            }
        }
        parts += options.map { "[\($0.rawValue)=\($0.syntax(on: self))]" }
        return parts.joined(separator: " ")
    }
}

/// The options of §5 (besides `id`) and the values each accepts.
public enum RequestOption: String, CaseIterable, Sendable {
    case cache, trace, failures, format
    /// `show-cache` paging (§5.2): list the names after this one, and at most this many.
    case after, limit

    /// The fixed values it accepts on `verb`; empty for `after` (any name) and `limit` (a count).
    /// `statistics` also speaks the Prometheus text format.
    public func values(on verb: Verb) -> [String] {
        switch self {
        case .format: return verb == .statistics ? ["text", "json", "prometheus"] : ["text", "json"]
        case .cache, .trace, .failures: return ["yes", "no"]
        case .after, .limit: return []
        }
    }

    /// How its value is written in usage texts.
    public func syntax(on verb: Verb) -> String {
        switch self {
        case .after: return "NAME"
        case .limit: return "N"
        default: return values(on: verb).joined(separator: "|")
        }
    }

    public func accepts(_ value: String, on verb: Verb) -> Bool {
        switch self {
        case .after: return true
        case .limit: return value.utf8.count <= 9 && value.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && (Int(value) ?? 0) > 0
        default: return values(on: verb).contains(value)
        }
    }
}
