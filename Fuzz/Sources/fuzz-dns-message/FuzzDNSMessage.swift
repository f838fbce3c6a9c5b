import FuzzCheck
import MXAdapters
import MXCore

// The DNS message parser (MXAdapters/DNSMessage.swift) on any bytes. A message it accepts, written
// out again without compression, must parse to the same message: nothing read is invented, dropped
// or mangled, and every name stays within DNS limits.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDNSMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    guard let message = accepted({ try DNSMessage(parsing: bytes) }, "\(bytes)") else { return 0 }
    var writer = DNSWriter()
    writer.message(message)
    let again: DNSMessage
    do {
        again = try DNSMessage(parsing: writer.bytes)
    } catch {
        require(false, "the re-encoded message does not parse: \(error)")
        return 0
    }
    require(again == message, "round trip changed the message:\n\(message)\n\(again)")

    // What the resolver asks of a message stays bounded for any content.
    if let owner = message.answers.first?.name {
        let (chain, _) = message.cnameChain(from: owner)
        require(chain.count <= DNSMessage.maxCNAMEChain + 1, "CNAME chain of \(chain.count) names")
        _ = message.records(ofType: DNSRecordType.srv, for: owner)
    }
    _ = message.negativeTTL
    return 0
}

/// Writes a parsed message back to wire form: the flags, the answer and authority sections, no
/// question (the parser does not keep it), no additional section, no compression.
struct DNSWriter {
    var bytes: [UInt8] = []

    mutating func message(_ m: DNSMessage) {
        u16(0); u16(m.flags)
        u16(0); u16(UInt16(m.answers.count)); u16(UInt16(m.authority.count)); u16(0)
        for rr in m.answers + m.authority { record(rr) }
    }

    mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xFFFF)) }

    /// Presentation form back to labels: `\DDD` is one octet, an unescaped `.` ends a label.
    mutating func name(_ text: String) {
        let start = bytes.count
        if text != "." {
            let chars = Array(text.utf8)
            var label: [UInt8] = []
            var i = 0
            while i < chars.count {
                if chars[i] == UInt8(ascii: "\\") {
                    require(i + 3 < chars.count, "truncated escape in \(text.debugDescription)")
                    let digits = chars[(i + 1)..<(i + 4)]
                    require(digits.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }, "bad escape in \(text.debugDescription)")
                    let value = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
                    require(value <= 255, "escape above 255 in \(text.debugDescription)")
                    label.append(UInt8(value))
                    i += 4
                } else if chars[i] == UInt8(ascii: ".") {
                    endLabel(&label, text)
                    i += 1
                } else {
                    label.append(chars[i])
                    i += 1
                }
            }
            endLabel(&label, text)
        }
        bytes.append(0)
        require(bytes.count - start <= DNSMessage.maxNameLength, "name \(text.debugDescription) is \(bytes.count - start) octets on the wire")
    }

    mutating func endLabel(_ label: inout [UInt8], _ text: String) {
        require((1...63).contains(label.count), "label of \(label.count) octets in \(text.debugDescription)")
        bytes.append(UInt8(label.count))
        bytes += label
        label.removeAll()
    }

    mutating func record(_ rr: DNSResourceRecord) {
        name(rr.name)
        u16(rr.type); u16(rr.rclass); u32(rr.ttl)
        let lengthAt = bytes.count
        u16(0)
        switch rr.data {
        case .address(let ip): bytes += ip.bytes
        case .cname(let target): name(target)
        case .srv(let priority, let weight, let port, let target):
            u16(priority); u16(weight); u16(port); name(target)
        case .soa(let mname, let rname, let serial, let refresh, let retry, let expire, let minimum):
            name(mname); name(rname)
            for v in [serial, refresh, retry, expire, minimum] { u32(v) }
        case .other(let raw): bytes += raw
        }
        let length = bytes.count - lengthAt - 2
        bytes[lengthAt] = UInt8(length >> 8)
        bytes[lengthAt + 1] = UInt8(length & 0xFF)
    }
}
