#if canImport(Glibc)
import Glibc
#endif
import FuzzCheck
@testable import MXAdapters
import MXCore

// Response headers as curl hands them over (MXAdapters/CurlHTTPS.swift `headerLine`), the cache
// lifetime read from them (MXCore/CachePolicy.swift) and HTTP dates (MXCore/HTTPDate.swift).
// Dates are checked against the C library's calendar: any date the parser accepts is one it can
// write back, and the three formats of a date derived from the input all parse to that date.

let now: Double = 1_800_000_000

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPHeaders(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    var headers: [HTTPHeader] = []
    for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        (Array(line) + [UInt8(ascii: "\n")]).withUnsafeBytes { CurlHTTPS.headerLine($0, into: &headers) }
    }
    for header in headers {
        require(!header.name.isEmpty && header.name == header.name.lowercased() && !header.name.contains(":"),
                "header name \(header.name.debugDescription)")
        for text in [header.name, header.value] {
            require(text.first != " " && text.first != "\t" && text.last != " " && text.last != "\t",
                    "untrimmed \(text.debugDescription)")
        }
        if let t = HTTPDate.parse(header.value, now: now) { checkParsedDate(t, header.value) }
    }
    if let lifetime = CachePolicy.headerLifetime(headers, now: now) {
        require(lifetime.isFinite, "lifetime \(lifetime) from \(headers)")
        let clamped = CachePolicy.wellKnownLifetime(headerLifetime: lifetime, jitter: 0)
        require((CachePolicy.wellKnownMinLifetime...CachePolicy.wellKnownMaxLifetime).contains(clamped), "clamped to \(clamped)")
    }
    if bytes.count >= 8 { checkDateFormats(seconds(from: bytes)) }
    return 0
}

/// A moment in years 0000–9999 (what a 4-digit year can say), taken from the first 8 input bytes.
func seconds(from bytes: [UInt8]) -> Int {
    let raw = bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    let first = -62_167_219_200, last = 253_402_300_799   // 0000-01-01T00:00:00Z, 9999-12-31T23:59:59Z
    return first + Int(raw % UInt64(last - first + 1))
}

/// A date the parser accepts is a real moment with a 4-digit year, and its IMF form reads back the same.
func checkParsedDate(_ t: Double, _ text: String) {
    require(t.isFinite && t == t.rounded(), "\(text.debugDescription) parsed to \(t)")
    require((-62_167_219_200...253_402_300_799).contains(t), "\(text.debugDescription) parsed to \(t), outside years 0000–9999")
    let imf = formats(Int(t)).imf
    require(HTTPDate.parse(imf) == t, "\(text.debugDescription) -> \(t) -> \(imf.debugDescription) -> \(String(describing: HTTPDate.parse(imf)))")
}

func checkDateFormats(_ t: Int) {
    let f = formats(t)
    require(HTTPDate.parse(f.imf) == Double(t), "\(f.imf.debugDescription) is not \(t)")
    require(HTTPDate.parse(f.asctime) == Double(t), "\(f.asctime.debugDescription) is not \(t)")
    // RFC 850's two-digit year names the year nearest `now` (at most 50 years ahead).
    require(HTTPDate.parse(f.rfc850, now: Double(t)) == Double(t), "\(f.rfc850.debugDescription) is not \(t)")
    require(HTTPDate.year(ofEpochSeconds: Double(t)) == f.year, "year of \(t) is not \(f.year)")
}

let dayNames = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
let longDayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

/// The three formats of RFC 9110 §5.6.7 for `t`, from the C library's `gmtime_r`.
func formats(_ t: Int) -> (imf: String, rfc850: String, asctime: String, year: Int) {
    var clock = time_t(t)
    var tm = tm()
    require(gmtime_r(&clock, &tm) != nil, "gmtime_r failed for \(t)")
    func pad(_ v: Int32, _ width: Int, _ fill: Character = "0") -> String {
        let s = String(v)
        return String(repeating: fill, count: max(0, width - s.count)) + s
    }
    let year = Int(tm.tm_year) + 1900
    let time = "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))"
    let month = monthNames[Int(tm.tm_mon)]
    let imf = "\(dayNames[Int(tm.tm_wday)]), \(pad(tm.tm_mday, 2)) \(month) \(pad(Int32(year), 4)) \(time) GMT"
    let rfc850 = "\(longDayNames[Int(tm.tm_wday)]), \(pad(tm.tm_mday, 2))-\(month)-\(pad(Int32(year % 100), 2)) \(time) GMT"
    let asctime = "\(dayNames[Int(tm.tm_wday)]) \(month) \(pad(tm.tm_mday, 2, " ")) \(time) \(pad(Int32(year), 4))"
    return (imf, rfc850, asctime, year)
}
