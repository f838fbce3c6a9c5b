import FuzzCheck
import MXCore

// The server-name grammar (MXCore/ServerName.swift) on any text. An accepted name must be what the
// spec's grammar allows, and its canonical form must parse back to the same host and port.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServerName(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: fuzzInput(data, size), as: UTF8.self)
    guard let name = accepted({ try ServerName(parsing: text) }, text.debugDescription) else { return 0 }
    checkAccepted(name, text)
    return 0
}

let hostnameBytes = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.".utf8))
let ipv6Bytes = Set(Array("0123456789abcdefABCDEF:.".utf8))  // the grammar's IPv6char
let digitBytes = Set(Array("0123456789".utf8))

func checkAccepted(_ name: ServerName, _ text: String) {
    require(name.raw == text, "raw \(name.raw.debugDescription) is not the input \(text.debugDescription)")
    require((1...255).contains(text.utf8.count), "accepted \(text.utf8.count) bytes")
    require(name.port.map { $0 >= 1 } ?? true, "port 0 accepted in \(text.debugDescription)")

    // The host as written: everything before the port.
    let hostText: Substring
    if let port = name.port {
        let suffix = ":\(port)"
        let written = text.split(separator: ":").last.map { ":" + $0 } ?? ""
        require(Int(written.dropFirst()) == Int(port) && written.utf8.count <= 6,
                "port \(port) is not what \(text.debugDescription) says (\(suffix))")
        hostText = text.dropLast(written.utf8.count)
    } else {
        hostText = Substring(text)
    }

    switch name.host {
    case .dns(let host):
        require(host == hostText, "dns host \(host.debugDescription) is not \(hostText.debugDescription)")
        require(host.utf8.allSatisfy(hostnameBytes.contains), "dns host \(host.debugDescription) has a byte outside [A-Za-z0-9.-]")
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            require((1...63).contains(label.utf8.count), "label \(label.debugDescription) length \(label.utf8.count)")
            require(label.first != "-" && label.last != "-", "label \(label.debugDescription) has an outer hyphen")
        }
        // The grammar's IPv4address shape (four groups of 1–3 digits) is an address or nothing.
        require(!(labels.count == 4 && labels.allSatisfy { $0.utf8.count <= 3 && $0.utf8.allSatisfy(digitBytes.contains) }),
                "dotted-quad \(host.debugDescription) accepted as a DNS name")
        require(name.dnsName == host.lowercased(), "dnsName is not the lower-cased host")
    case .ipv4(let ip):
        require(!ip.isIPv6 && IPAddress(ipv4: String(hostText)) == ip, "ipv4 \(ip) is not \(hostText.debugDescription)")
        require(hostText.utf8.allSatisfy { digitBytes.contains($0) || $0 == UInt8(ascii: ".") },
                "ipv4 host \(hostText.debugDescription) has a byte outside [0-9.]")
    case .ipv6(let ip):
        require(ip.isIPv6, "ipv6 host holds a 4-byte address")
        require(hostText.first == "[" && hostText.last == "]", "ipv6 host \(hostText.debugDescription) is not bracketed")
        let inner = hostText.dropFirst().dropLast()
        require(inner.utf8.allSatisfy(ipv6Bytes.contains), "ipv6 literal \(inner.debugDescription) has a byte outside IPv6char")
        require(IPAddress(ipv6: String(inner)) == ip, "ipv6 literal \(inner.debugDescription) does not denote \(ip)")
    }

    // The canonical rendering (what goes into URLs and Host headers) is a valid name for the same place.
    let canonical = name.hostForURL + (name.port.map { ":\($0)" } ?? "")
    let again = try? ServerName(parsing: canonical)
    require(again?.host == name.host && again?.port == name.port,
            "canonical form \(canonical.debugDescription) of \(text.debugDescription) does not parse back")
}
