/// Writes the Prometheus text exposition format, version 0.0.4: for each metric family a `# HELP`
/// and a `# TYPE` line, then its samples, one per line (`name{label="value"} number`).
public struct PrometheusText: Sendable {
    /// The Content-Type of this format, for the HTTP endpoint.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public enum Kind: String, Sendable { case counter, gauge, histogram }
    public typealias Labels = [(name: String, value: String)]

    public private(set) var text = ""

    public init() {}

    /// Starts a family. Names follow the format's grammar; a name outside it is a bug here.
    public mutating func family(_ name: String, _ kind: Kind, help: String) {
        precondition(Self.isValidName(name), "invalid metric name \(name)")
        text += "# HELP \(name) \(Self.escape(help: help))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    public mutating func sample(_ name: String, _ labels: Labels = [], _ value: String) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.name)=\"\(Self.escape(labelValue: $0.value))\"" }.joined(separator: ",") + "}"
        }
        text += " \(value)\n"
    }

    public mutating func sample(_ name: String, _ labels: Labels = [], _ value: Int) { sample(name, labels, String(value)) }

    /// A family of one unlabelled sample.
    public mutating func single(_ name: String, _ kind: Kind, help: String, _ value: Int) {
        family(name, kind, help: help)
        sample(name, [], value)
    }

    /// A family with one sample per label value.
    public mutating func labelled(_ name: String, _ kind: Kind, help: String, label: String, _ values: [(String, Int)]) {
        family(name, kind, help: help)
        for (v, n) in values { sample(name, [(label, v)], n) }
    }

    /// A histogram family in seconds: per series the cumulative `_bucket` samples (`le` = the upper
    /// bound, then `+Inf`), `_sum` and `_count`. `bounds` are nanoseconds; `counts.buckets` has one
    /// more element than `bounds` (the values above every bound).
    public mutating func histogram(_ name: String, help: String, bounds: [Int], series: [(Labels, LatencyHistogram.Counts)]) {
        family(name, .histogram, help: help)
        for (labels, counts) in series {
            precondition(counts.buckets.count == bounds.count + 1, "a bucket per bound and +Inf")
            var cumulative = 0
            for (i, bound) in bounds.enumerated() {
                cumulative += counts.buckets[i]
                sample("\(name)_bucket", labels + [("le", Self.seconds(nanoseconds: bound))], cumulative)
            }
            sample("\(name)_bucket", labels + [("le", "+Inf")], counts.count)
            sample("\(name)_sum", labels, Self.seconds(nanoseconds: counts.sumNanoseconds))
            sample("\(name)_count", labels, counts.count)
        }
    }

    /// Nanoseconds as an exact decimal number of seconds (`1500000` → `0.0015`).
    public static func seconds(nanoseconds: Int) -> String {
        let whole = nanoseconds / 1_000_000_000
        let fraction = nanoseconds % 1_000_000_000
        guard fraction != 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(0x30...0x39).contains(first) else { return false }
        return name.utf8.allSatisfy { isLetter($0) || (0x30...0x39).contains($0) || $0 == 0x5F || $0 == 0x3A }
    }

    private static func isLetter(_ b: UInt8) -> Bool { (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) }

    /// HELP text escapes backslash and line feed.
    static func escape(help: String) -> String {
        help.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }

    /// Label values escape backslash, double quote and line feed.
    static func escape(labelValue: String) -> String {
        escape(help: labelValue).replacing("\"", with: "\\\"")
    }
}
