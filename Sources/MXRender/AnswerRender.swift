import MXCore
import MXProtocol

/// Answers and cache entries as protocol text fields and JSON: the daemon's replies, and
/// mxresolvectl's `show-cache` when it reads the cache file itself (the daemon is down).
public enum AnswerRender {
    /// The answer's ` host=… tls_name=… sni=… target=…` text, when it is the same for every hit
    /// (nil when SRV weights reorder the targets per hit): rendered once per cached answer.
    public static func fixedAnswerFields(_ a: Resolution) -> [UInt8]? {
        let fromSRV = a.targets.allSatisfy { $0.srvRank != nil }
        let sharesAPriority = Set(a.targets.map(\.priority)).count < a.targets.count
        if fromSRV && sharesAPriority { return nil }
        var b = ResponseLine.Builder("", id: nil)
        answerFields(a, into: &b)
        return b.bytes
    }

    public static func answerFields(_ a: Resolution, into b: inout ResponseLine.Builder) {
        b.field("host", a.hostHeader)
        b.field("tls_name", a.tlsServerName)
        b.field("sni", a.sni ?? "")
        for t in SRVOrder.reordered(a.targets) {
            b.field("target", ([t.host, String(t.port)] + t.addresses.map(\.description)).joined(separator: ","))
        }
        // The lifetime of each ingredient, as fetched (the answer's own `ttl` is their minimum, clamped).
        if let wk = a.wellKnown?.headerLifetime { b.field("well_known_max_age", Int(wk)) }
        if let srv = a.srvTTL { b.field("srv_ttl", Int(srv)) }
        if let addr = a.addressTTL { b.field("address_ttl", Int(addr)) }
    }

    public static func failureJSON(_ f: ResolutionFailure, into o: inout JSONObject) {
        var e = JSONObject()
        e.string("code", f.code.rawValue)
        e.string("message", f.message)
        o.raw("error", e.text)
    }

    public static func answerJSON(_ a: Resolution, into o: inout JSONObject) {
        let targets = SRVOrder.reordered(a.targets).map { t -> String in
            var j = JSONObject()
            j.string("host", t.host)
            j.int("port", Int(t.port))
            j.raw("addresses", JSONObject.array(t.addresses.map { JSONObject.quote($0.description) }))
            return j.text
        }
        o.raw("targets", JSONObject.array(targets))
        o.string("host_header", a.hostHeader)
        o.string("tls_server_name", a.tlsServerName)
        o.optionalString("sni", a.sni)
        o.string("step", a.step.rawValue)
        var lifetimes = JSONObject()
        lifetimes.raw("well_known_max_age", a.wellKnown?.headerLifetime.map { String(Int($0)) } ?? "null")
        lifetimes.raw("srv_ttl", a.srvTTL.map { String($0) } ?? "null")
        lifetimes.raw("address_ttl", a.addressTTL.map { String($0) } ?? "null")
        o.raw("lifetimes", lifetimes.text)
    }

    public static func entryLine(_ e: CacheEntry, id: String?, now: Double) -> [UInt8] {
        var b = ResponseLine.Builder("entry", id: id)
        b.field("name", e.serverName)
        let ttl = max(0, Int(e.expiresAt - now))
        if let a = e.answer {
            b.field("status", "ok")
            b.field("ttl", ttl)
            if CacheRules.isStale(e, now: now) { b.field("stale", "yes") }
            b.field("step", a.step.rawValue)
            answerFields(a, into: &b)
        } else if let f = e.failure {
            b.field("status", "err")
            b.field("ttl", ttl)
            b.field("code", f.code.rawValue)
            b.field("msg", f.message)
            b.field("failures", e.consecutiveFailures)
        }
        if let wk = e.wellKnown {
            switch wk.result {
            case .delegated(let d): b.field("well_known", d)
            case .failed(let code, _, _): b.field("well_known", "failed:\(code)")
            }
            if let until = e.wellKnownExpiresAt { b.field("well_known_ttl", max(0, Int(until - now))) }
        }
        return b.line()
    }

    public static func entryJSON(_ e: CacheEntry, now: Double) -> String {
        var o = JSONObject()
        o.string("server_name", e.serverName)
        o.bool("ok", e.answer != nil)
        o.bool("stale", CacheRules.isStale(e, now: now))
        o.int("expires_in", max(0, Int(e.expiresAt - now)))
        if let a = e.answer {
            answerJSON(a, into: &o)
        } else if let f = e.failure {
            failureJSON(f, into: &o)
            o.int("consecutive_failures", e.consecutiveFailures)
        }
        if let wk = e.wellKnown {
            switch wk.result {
            case .delegated(let d): o.string("well_known", d)
            case .failed(let code, _, _): o.string("well_known", "failed:\(code)")
            }
        }
        return o.text
    }
}
