#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// The daemon's log lines on stderr, one write(2) each. Under systemd, when stderr is the journal
/// stream named by JOURNAL_STREAM, a line starts with its syslog priority (`<3>`, sd-daemon(3)) and
/// has no timestamp: the journal stamps and ranks every line itself. Elsewhere a line starts with
/// the local time, as swift-log's StreamLogHandler writes it.
public struct DaemonLogHandler: LogHandler {
    public enum Format: Sendable, Equatable { case journal, plain }

    let label: String
    let format: Format
    let level: LogLevelSwitch
    public var metadata: Logger.Metadata = [:]

    public init(label: String, format: Format, level: LogLevelSwitch) {
        self.label = label
        self.format = format
        self.level = level
    }

    /// One level for every logger of the process, so a reload (SIGHUP) changes them all.
    public var logLevel: Logger.Level {
        get { level.value }
        set { level.value = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let explicit = event.metadata { fields.merge(explicit) { _, new in new } }
        let pretty = fields.isEmpty ? "" : " " + fields.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " ")
        let body = "\(event.level) \(label):\(pretty) [\(event.source)] \(event.message)\n"
        let line = format == .journal ? "<\(Self.syslogPriority(event.level))>" + body : Self.timestamp() + " " + body
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
    }

    /// syslog(3) priorities as sd-daemon(3) prefixes read them.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func timestamp() -> String {
        var now = time(nil)
        var local = tm()
        guard localtime_r(&now, &local) != nil else { return "<unknown>" }
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &local)
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `.journal` when JOURNAL_STREAM names this process's stderr ("DEV:INODE", systemd.exec(5));
    /// a stderr redirected elsewhere by a child of the service keeps its timestamps.
    public static func detectFormat(journalStream: String? = getenv("JOURNAL_STREAM").map { String(cString: $0) }) -> Format {
        guard let value = journalStream else { return .plain }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return .plain }
        var st = stat()
        guard fstat(2, &st) == 0 else { return .plain }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino ? .journal : .plain
    }
}

/// The process-wide log level, changeable at run time.
public final class LogLevelSwitch: Sendable {
    private let raw: Atomic<Int>

    public init(_ level: Logger.Level) { raw = Atomic(Self.index(level)) }

    public var value: Logger.Level {
        get { Logger.Level.allCases[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.index(newValue), ordering: .relaxed) }
    }

    private static func index(_ level: Logger.Level) -> Int { Logger.Level.allCases.firstIndex(of: level) ?? 2 }
}
