import MXCore
import MXProtocol
import MXRender

/// Renders `resolve` replies as protocol lines (text and JSON); answers and cache entries are
/// rendered by `AnswerRender`, shared with mxresolvectl.
enum Render {
    static func resolveReply(_ reply: ResolutionService.Reply, request: Request, trace: Bool) -> [UInt8] {
        let id = request.id
        let traceLines = trace ? reply.trace : []
        if request.json {
            var o = JSONObject()
            o.bool("ok", reply.answer != nil)
            if let id { o.string("id", id) }
            o.string("server_name", reply.serverName)
            if let a = reply.answer {
                AnswerRender.answerJSON(a, into: &o)
            } else if let f = reply.failure {
                AnswerRender.failureJSON(f, into: &o)
            }
            o.string("source", reply.source.rawValue)
            o.int("expires_in", max(0, reply.expiresIn))
            o.raw("trace", JSONObject.array(traceLines.map(JSONObject.quote)))
            return Array((o.text + "\n").utf8)
        }
        if let a = reply.answer {
            var b = ResponseLine.Builder("ok", id: id)
            b.field("name", reply.serverName)
            b.field("step", a.step.rawValue)
            b.field("source", reply.source.rawValue)
            b.field("ttl", max(0, reply.expiresIn))
            if let pre = reply.renderedFields { b.raw(pre) } else { AnswerRender.answerFields(a, into: &b) }
            for t in traceLines { b.field("trace", t) }
            return b.line()
        }
        let f = reply.failure ?? ResolutionFailure(code: .dnsError, message: "no answer")
        var b = ResponseLine.Builder("err", id: id)
        b.field("name", reply.serverName)
        b.field("code", f.code.rawValue)
        b.field("msg", f.message)
        b.field("source", reply.source.rawValue)
        b.field("ttl", max(0, reply.expiresIn))
        for t in traceLines { b.field("trace", t) }
        return b.line()
    }
}
