/// HTTP dates (RFC 9110 §5.6.7) without Foundation: the three formats a recipient must accept.
///
///     Sun, 06 Nov 1994 08:49:37 GMT    IMF-fixdate (what servers send)
///     Sunday, 06-Nov-94 08:49:37 GMT   obsolete RFC 850 format (two-digit year)
///     Sun Nov  6 08:49:37 1994         obsolete ANSI C asctime() format
///
/// Parsing is a little lenient where it costs nothing (runs of spaces, case of names, a one-digit
/// day, a day name that does not match the date) and strict where it matters (every number
/// range-checked, the zone must be GMT, nothing trailing).
public enum HTTPDate {
    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let shortDays: Set<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    static let longDays: Set<String> = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

    /// Seconds since the epoch, or nil when `text` is none of the three formats.
    /// `now` (seconds since the epoch) places an RFC 850 two-digit year: per RFC 9110, a year more
    /// than 50 years in the future is the most recent past year with those digits. Without `now`,
    /// 70–99 are 19xx and 00–69 are 20xx.
    public static func parse(_ text: String, now: Double? = nil) -> Double? {
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { String($0).lowercased() }
        guard let first = tokens.first else { return nil }
        if first.hasSuffix(",") {
            let dayName = String(first.dropLast())
            guard shortDays.contains(dayName) || longDays.contains(dayName) else { return nil }
            if tokens.count == 6 {
                // IMF-fixdate: day month year time GMT
                guard tokens[5] == "gmt", let day = number(tokens[1], digits: 1...2), let month = month(tokens[2]),
                      let year = number(tokens[3], digits: 4...4) else { return nil }
                return compose(year: year, month: month, day: day, time: tokens[4])
            }
            if tokens.count == 4 {
                // RFC 850: dd-mon-yy time GMT
                let dmy = tokens[1].split(separator: "-", omittingEmptySubsequences: false).map(String.init)
                guard tokens[3] == "gmt", dmy.count == 3, let day = number(dmy[0], digits: 1...2),
                      let month = month(dmy[1]), let yy = number(dmy[2], digits: 2...2) else { return nil }
                return compose(year: fullYear(twoDigit: yy, now: now), month: month, day: day, time: tokens[2])
            }
            return nil
        }
        // asctime: dayname month day time year
        guard tokens.count == 5, shortDays.contains(first), let month = month(tokens[1]),
              let day = number(tokens[2], digits: 1...2), let year = number(tokens[4], digits: 4...4) else { return nil }
        return compose(year: year, month: month, day: day, time: tokens[3])
    }

    /// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The Gregorian year containing `seconds` since the epoch (UTC).
    public static func year(ofEpochSeconds seconds: Double) -> Int {
        let days = Int((seconds / 86_400).rounded(.down))
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let month = mp < 10 ? mp + 3 : mp - 9
        return yoe + era * 400 + (month <= 2 ? 1 : 0)
    }

    // MARK: Pieces

    static func fullYear(twoDigit yy: Int, now: Double?) -> Int {
        guard let now else { return yy >= 70 ? 1900 + yy : 2000 + yy }
        let current = year(ofEpochSeconds: now)
        var y = current - current % 100 + yy
        if y > current + 50 { y -= 100 }
        return y
    }

    static func month(_ token: String) -> Int? {
        months.firstIndex(of: token).map { $0 + 1 }
    }

    static func number(_ token: String, digits: ClosedRange<Int>) -> Int? {
        guard digits.contains(token.utf8.count), token.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(token)
    }

    static func compose(year: Int, month: Int, day: Int, time: String) -> Double? {
        let hms = time.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard hms.count == 3, let h = number(hms[0], digits: 2...2), let m = number(hms[1], digits: 2...2),
              let s = number(hms[2], digits: 2...2), h < 24, m < 60, s <= 60 else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        return Double(days * 86_400 + h * 3600 + m * 60 + s)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
