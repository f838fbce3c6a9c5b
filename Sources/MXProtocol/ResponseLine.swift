/// A response line (§3): `ok`, `err` or `entry`, then `key=value` fields in order (keys may repeat).
public struct ResponseLine: Sendable {
    public var status: String
    public var fields: [(key: String, value: String)]

    /// Parses a text response line; values are %-decoded (an undecodable value reads as empty).
    public init(_ line: String) {
        let tokens = line.split(separator: " ")
        status = tokens.first.map(String.init) ?? ""
        fields = tokens.dropFirst().map { token in
            guard let eq = token.firstIndex(of: "=") else { return (String(token), "") }
            return (String(token[..<eq]), Wire.percentDecode(token[token.index(after: eq)...]) ?? "")
        }
    }

    public subscript(_ key: String) -> String? { fields.first { $0.key == key }?.value }
    public func all(_ key: String) -> [String] { fields.filter { $0.key == key }.map(\.value) }

    public var isError: Bool { status == "err" }
    /// The protocol error code of an `err` line, when it is one of §7's protocol errors.
    public var errorCode: ErrorCode? { isError ? self["code"].flatMap(ErrorCode.init(rawValue:)) : nil }

    /// Builds `status [id=..] key=value...` lines, escaping every value.
    public struct Builder {
        public var bytes: [UInt8]

        public init(_ status: String, id: String?) {
            bytes = Array(status.utf8)
            bytes.reserveCapacity(256)
            if let id { field("id", id) }
        }

        public mutating func field(_ key: String, _ value: String) {
            bytes.append(0x20)
            bytes.append(contentsOf: key.utf8)
            bytes.append(0x3D)
            Wire.escape(value, into: &bytes)
        }

        public mutating func field(_ key: String, _ value: Int) {
            bytes.append(0x20)
            bytes.append(contentsOf: key.utf8)
            bytes.append(0x3D)
            bytes.append(contentsOf: String(value).utf8)
        }

        /// Appends pre-rendered ` key=value` text (already escaped).
        public mutating func raw(_ pre: [UInt8]) { bytes.append(contentsOf: pre) }

        public func line() -> [UInt8] { bytes + [0x0A] }
    }

    /// A protocol error, as a text line or (for a request that asked for JSON, §6) a JSON object.
    public static func error(_ code: ErrorCode, _ message: String, id: String?, json: Bool = false) -> [UInt8] {
        if json {
            var o = JSONObject()
            o.bool("ok", false)
            if let id { o.string("id", id) }
            var e = JSONObject()
            e.string("code", code.rawValue)
            e.string("message", message)
            o.raw("error", e.text)
            return Array((o.text + "\n").utf8)
        }
        var b = Builder("err", id: id)
        b.field("code", code.rawValue)
        b.field("msg", message)
        return b.line()
    }
}
