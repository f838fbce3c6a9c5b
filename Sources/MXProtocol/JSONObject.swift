/// A tiny JSON object writer (ordered keys, correct string escaping), so answers need no encoder.
public struct JSONObject {
    private var parts: [String] = []
    public init() {}
    public mutating func string(_ key: String, _ value: String) { parts.append("\(JSONObject.quote(key)):\(JSONObject.quote(value))") }
    public mutating func optionalString(_ key: String, _ value: String?) {
        parts.append("\(JSONObject.quote(key)):\(value.map(JSONObject.quote) ?? "null")")
    }
    public mutating func int(_ key: String, _ value: Int) { parts.append("\(JSONObject.quote(key)):\(value)") }
    public mutating func bool(_ key: String, _ value: Bool) { parts.append("\(JSONObject.quote(key)):\(value)") }
    public mutating func raw(_ key: String, _ json: String) { parts.append("\(JSONObject.quote(key)):\(json)") }
    public var text: String { "{" + parts.joined(separator: ",") + "}" }

    public static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x2028 || u.value == 0x2029 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
