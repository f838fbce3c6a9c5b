#if canImport(Glibc)
import Glibc
#endif
import MXCore

/// `/etc/hosts` for address lookups, as getaddrinfo ("files" before "dns") gives it to Synapse: a
/// name listed there gets the file's addresses and no DNS query. The file is read again when its
/// modification time or size changes (checked on each lookup; a stat is cheaper than the
/// lookup it may save). A missing or unreadable file lists nothing.
public final class HostsFile: Sendable {
    /// Entries have no TTL; an answer from the file is given this one, so a change is seen within it.
    public static let ttl: UInt32 = 60

    let path: String
    private let state = PthreadMutex<(stamp: Stamp?, names: [String: AddressSet])>((nil, [:]))

    struct Stamp: Equatable {
        var modified: timespec
        var size: Int
        static func == (a: Stamp, b: Stamp) -> Bool {
            a.size == b.size && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
        }
    }

    public init(path: String) {
        self.path = path
    }

    /// The file's addresses for `host` (lower-cased, without a trailing dot), or nil if it is not listed.
    public func addresses(of host: String) -> AddressSet? {
        var st = stat()
        let stamp = stat(path, &st) == 0 ? Stamp(modified: st.st_mtim, size: Int(st.st_size)) : nil
        return state.withLock { s in
            if s.stamp != stamp || (stamp == nil && !s.names.isEmpty) {
                s = (stamp, stamp == nil ? [:] : Self.parse(Self.read(path) ?? ""))
            }
            return s.names[host]
        }
    }

    /// hosts(5): an address, then names; "#" starts a comment. Lines that do not parse are skipped.
    static func parse(_ text: String) -> [String: AddressSet] {
        var names: [String: AddressSet] = [:]
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let ip = IPAddress(String(fields[0])) else { continue }
            let address = ResolvedAddress(address: ip, ttl: ttl)
            for field in fields.dropFirst() {
                var name = field.lowercased()
                if name.count > 1, name.hasSuffix(".") { name.removeLast() }
                var set = names[name] ?? AddressSet(ipv6: [], ipv4: [], source: .hostsFile)
                if ip.isIPv6 {
                    if !set.ipv6.contains(address) { set.ipv6.append(address) }
                } else if !set.ipv4.contains(address) {
                    set.ipv4.append(address)
                }
                names[name] = set
            }
        }
        return names
    }

    static func read(_ path: String) -> String? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        // A hosts file is small; a huge one is cut rather than read without bound.
        while out.count < 16 << 20 {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 0 { out += chunk[0..<n] }
            if n < chunk.count { break }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
