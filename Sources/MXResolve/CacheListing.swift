import Dispatch
import MXCore
import MXProtocol
import MXRender

/// One `show-cache` answer (PROTOCOL.md §5.2) as a stream: each page reads one short page of the
/// store on the scan queue, so a listing of any size holds no reactor thread and, at a time, one
/// page of entries in memory. The listing stops after `limit` entries and names the last one as
/// `next=`, where the client's next `after=` continues.
final class CacheListing: ReplyStream {
    /// Store records read per page.
    static let recordsPerPage = 256

    struct Request: Sendable {
        /// Only this name's entry.
        var name: String?
        var failures: Bool
        var json: Bool
        var id: String?
        /// List the names after this one (in the store's key order).
        var after: String?
        /// At most this many entries; nil: all.
        var limit: Int?
    }

    private struct Progress {
        var started = false
        /// Where the next page of the store starts.
        var after: String?
        var listed = 0
        var lastListed: String?
    }

    let request: Request
    let store: any CacheStore
    let service: ResolutionService
    let queue: DispatchQueue
    private let progress: PthreadMutex<Progress>

    init(_ request: Request, store: any CacheStore, service: ResolutionService, queue: DispatchQueue) {
        self.request = request
        self.store = store
        self.service = service
        self.queue = queue
        progress = PthreadMutex(Progress(after: request.after))
    }

    func nextPage(_ deliver: @escaping @Sendable (_ page: [UInt8], _ last: Bool) -> Void) {
        queue.async { [self] in
            let (page, last) = progress.withLock { produce(&$0) }
            deliver(page, last)
        }
    }

    private func produce(_ p: inout Progress) -> ([UInt8], Bool) {
        let now = wallClockSeconds()
        var out: [UInt8] = []
        if !p.started {
            p.started = true
            service.drainWrites()   // what was answered before the request is listed
            out += opening()
        }
        let records: [CacheEntry]
        let storeHasMore: Bool
        if let name = request.name {
            records = store.get(name).map { [$0] } ?? []
            storeHasMore = false
        } else {
            let page = store.scan(after: p.after, limit: Self.recordsPerPage)
            records = page.entries
            storeHasMore = page.next != nil
            p.after = page.next
        }
        for e in records where request.failures || !e.isFailure {
            if p.listed == request.limit { return (out + closing(p, next: p.lastListed), true) }
            out += entry(e, first: p.listed == 0, now: now)
            p.listed += 1
            p.lastListed = e.serverName
        }
        guard storeHasMore else { return (out + closing(p, next: nil), true) }
        if p.listed == request.limit { return (out + closing(p, next: p.lastListed), true) }
        return (out, false)
    }

    private func opening() -> [UInt8] {
        guard request.json else { return [] }
        var head = "{\"ok\":true"
        if let id = request.id { head += ",\"id\":" + JSONObject.quote(id) }
        return Array((head + ",\"entries\":[").utf8)
    }

    private func entry(_ e: CacheEntry, first: Bool, now: Double) -> [UInt8] {
        guard request.json else { return AnswerRender.entryLine(e, id: request.id, now: now) }
        return Array(((first ? "" : ",") + AnswerRender.entryJSON(e, now: now)).utf8)
    }

    private func closing(_ p: Progress, next: String?) -> [UInt8] {
        if request.json {
            var tail = "],\"count\":\(p.listed)"
            if let next { tail += ",\"next\":" + JSONObject.quote(next) }
            return Array((tail + "}\n").utf8)
        }
        var b = ResponseLine.Builder("ok", id: request.id)
        b.field("count", p.listed)
        if let next { b.field("next", next) }
        return b.line()
    }
}
