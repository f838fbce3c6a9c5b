import XCTest
import Foundation
import CLMDB
import MXCore
@testable import MXAdapters

/// The LMDB store against real files: persistence, format rebuilds, eviction under a full map,
/// read-only opens, and a SIGKILL in the middle of a write storm.
final class LMDBStoreTests: XCTestCase {
    static let crashChildVariable = "MXRESOLVED_LMDB_CRASH_CHILD"

    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "mxresolved-lmdb-\(getpid())-\(UInt32.random(in: 0...UInt32.max))/cache"
    }

    override func tearDown() {
        if !dir.isEmpty { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
    }

    /// An entry whose record is about `payload` bytes plus the key (its message fills it), and the
    /// last-use time to store it with.
    static func record(_ key: String, payload: Int = 64, expiresIn: Double = 3600, lastUsed: Double? = nil,
                              failure: Bool = false, failures: Int = 0) -> (entry: CacheEntry, lastUsed: Double) {
        let now = wallClockSeconds()
        let message = String((0..<payload).map { Character(Unicode.Scalar(UInt8(97 + ($0 &* 31 &+ key.utf8.count) % 26))) })
        let outcome: CacheEntry.Outcome = failure
            ? .failure(ResolutionFailure(code: .dnsServfail, message: message))
            : .answer(Resolution(serverName: key, step: .explicitPort, targets: [Target(host: message, port: 8448, addresses: [IPAddress("192.0.2.1")!])],
                                 hostHeader: key, tlsServerName: key, sni: nil, wellKnown: nil, srvTTL: nil, addressTTL: 300, trace: []))
        return (CacheEntry(serverName: key, outcome: outcome, fetchedAt: now, expiresAt: now + expiresIn, consecutiveFailures: failures),
                lastUsed ?? now)
    }

    // MARK: Persistence

    func testRoundTripAcrossTwoOpeningsKeepsKeysExactlyAsAsked() throws {
        let records = [Self.record("Example.ORG"), Self.record("example.org"), Self.record("example.org:8448", payload: 5000),
                       Self.record("[2001:db8::1]:8448", failure: true, failures: 3), Self.record("ünïcode.example", payload: 0)].map(\.entry)
        do {
            let store = try LMDBStore(directory: dir, mapSizeBytes: 4 << 20)
            XCTAssertNil(store.rebuiltFromFormat, "a new cache is not a rebuild")
            for r in records { try store.put(r, lastUsed: 1) }
            XCTAssertEqual(store.count, 5)
            store.close()
            XCTAssertNil(store.get("example.org"), "closed")
            XCTAssertThrowsError(try store.put(Self.record("x"))) { XCTAssertEqual($0 as? LMDBStoreError, .closed) }
        }
        let store = try LMDBStore(directory: dir, mapSizeBytes: 4 << 20)
        XCTAssertNil(store.rebuiltFromFormat)
        XCTAssertNil(store.rebuildReason)
        for r in records { XCTAssertEqual(store.get(r.serverName), r, r.serverName) }
        XCTAssertNil(store.get("EXAMPLE.ORG"), "keys are not case-folded")
        var seen: [String] = []
        store.forEach { seen.append($0.serverName) }
        XCTAssertEqual(seen, records.map(\.serverName).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        let stats = store.lmdbStatistics
        XCTAssertEqual(stats.entries, 5)
        XCTAssertEqual(stats.mapSize, 4 << 20)
        XCTAssertGreaterThan(stats.usedBytes, 0)
        XCTAssertLessThanOrEqual(stats.usedBytes, stats.highWaterBytes)
    }

    func testDeleteTouchAndIterationAcrossChunks() throws {
        let store = try LMDBStore(directory: dir, mapSizeBytes: 16 << 20)
        for i in 0..<1300 { try store.put(Self.record("name-\(i).example", failure: i % 3 == 0)) }
        var n = 0
        store.forEach { _ in n += 1 }
        XCTAssertEqual(n, 1300, "more than two chunks of 512, none lost or repeated")
        XCTAssertEqual(store.touch(["name-1.example": 1e12, "name-2.example": 0, "missing.example": 1e12]), 1,
                       "only raises lastUsed, only for existing keys")
        XCTAssertEqual(store.header("name-1.example")?.lastUsed, 1e12)
        XCTAssertEqual(store.get("name-1.example")?.answer, Self.record("name-1.example").entry.answer, "touch keeps the entry")
        XCTAssertTrue(store.delete("name-1.example"))
        XCTAssertFalse(store.delete("name-1.example"))
        XCTAssertEqual(store.deleteAll { $0.isFailure }, 434)
        XCTAssertEqual(store.count, 1300 - 434 - 1)
        XCTAssertEqual(store.deleteAll { _ in true }, 865)
        XCTAssertEqual(store.count, 0)
    }

    func testInvalidKeysAreRefused() throws {
        let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
        for key in ["", String(repeating: "a", count: 512)] {
            XCTAssertThrowsError(try store.put(Self.record(key))) { XCTAssertEqual($0 as? LMDBStoreError, .invalidKey(key)) }
            XCTAssertNil(store.get(key))
        }
        XCTAssertNoThrow(try store.put(Self.record(String(repeating: "a", count: 511))))
    }

    func testConcurrentReadersAndWriters() throws {
        let store = try LMDBStore(directory: dir, mapSizeBytes: 32 << 20)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<300 {
                let key = "t\(t)-\(i % 50).example"
                if i % 3 == 0 { try? store.put(Self.record(key, payload: 200)) } else { _ = store.get(key) }
                if i % 100 == 0 { store.touch([key: wallClockSeconds()]) }
            }
        }
        XCTAssertEqual(store.count, 8 * 50)
    }

    func testScanPagesInKeyOrderAndSkipsDamagedRecordsWithoutStopping() throws {
        let names = (0..<7).map { "page-\($0).example" }
        do {
            let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
            for n in names { try store.put(Self.record(n)) }
            store.close()
        }
        let good = CacheRecord.encode(Self.record("x").entry, lastUsed: 0)
        try rawPut(database: "entries", ["page-3.examplf": Array(good.prefix(40)),     // truncated
                                         "page-1.examplf": [1] + good.dropFirst(),      // another layout
                                         "page-5.examplf": good + [0]])                 // trailing bytes
        let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
        XCTAssertNil(store.get("page-3.examplf"), "a damaged record is absent")
        XCTAssertEqual(store.count, 10)
        var pages: [[String]] = []
        var after: String?
        repeat {
            let page = store.scan(after: after, limit: 3)
            pages.append(page.entries.map(\.serverName))
            after = page.next
        } while after != nil
        XCTAssertEqual(pages.flatMap { $0 }, names, "every readable entry once, in key order")
        XCTAssertEqual(pages.count, 4, "10 records, 3 a page")
        XCTAssertEqual(store.scan(after: "page-6.example", limit: 3).entries.count, 0)
        XCTAssertNil(store.scan(after: "page-6.example", limit: 3).next)
        try store.put(Self.record("page-3.examplf"))
        XCTAssertNotNil(store.get("page-3.examplf"), "a put replaces a damaged record")
    }

    // MARK: Format and rebuilds

    func testOtherFormatVersionIsRebuiltEmpty() throws {
        do {
            let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
            try store.put(Self.record("old.example"))
            store.close()
        }
        try rawMetaPut(["format_version": "mxresolved-cache-0"])
        XCTAssertThrowsError(try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true)) {
            XCTAssertEqual($0 as? LMDBStoreError, .incompatibleFormat(found: "mxresolved-cache-0"), "readers never rebuild")
        }
        let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
        XCTAssertEqual(store.rebuiltFromFormat, "mxresolved-cache-0")
        XCTAssertEqual(store.count, 0)
        try store.put(Self.record("new.example"))
        store.close()
        let again = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
        XCTAssertNil(again.rebuiltFromFormat)
        XCTAssertNotNil(again.get("new.example"))
    }

    func testFileThatIsNotLMDBIsMovedAsideAndRebuilt() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(repeating: 0x5A, count: 20000).write(to: URL(fileURLWithPath: dir + "/data.mdb"))
        XCTAssertThrowsError(try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true)) {
            XCTAssertEqual($0 as? LMDBStoreError, .damaged("meta page 0 is not an LMDB meta page"), "readers never rebuild")
        }
        let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
        XCTAssertEqual(store.rebuiltFromFormat, "damaged")
        XCTAssertEqual(store.rebuildReason, "the cache file was damaged (meta page 0 is not an LMDB meta page)")
        let aside = try XCTUnwrap(store.movedAsidePath)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: aside)), Data(repeating: 0x5A, count: 20000), "kept for a look")
        try store.put(Self.record("a.example"))
        XCTAssertNotNil(store.get("a.example"))
    }

    // MARK: Checking and verifying a file

    /// A closed cache of `count` entries; returns its file's size.
    @discardableResult
    func closedCache(_ count: Int) throws -> Int {
        let store = try LMDBStore(directory: dir, mapSizeBytes: 8 << 20)
        for i in 0..<count { try store.put(Self.record("v-\(i).example", payload: i % 7 == 0 ? 3000 : 80)) }
        for i in stride(from: 0, to: count, by: 3) { store.delete("v-\(i).example") } // a free list to check too
        store.close()
        return try XCTUnwrap(FileManager.default.attributesOfItem(atPath: dir + "/data.mdb")[.size] as? Int)
    }

    func testVerificationWalksASoundFileAndMetaPagesMatchTheFile() throws {
        let size = try closedCache(900)
        XCTAssertEqual(LMDBStore.verify(directory: dir), .sound(entries: 600, pages: size / 4096))
        guard case .sound(let meta) = LMDBFileCheck.inspect(dir + "/data.mdb") else { return XCTFail("inspect") }
        XCTAssertEqual(meta.pageSize, 4096)
        XCTAssertEqual((meta.lastPage + 1) * meta.pageSize, size, "the file ends with its last page")
        XCTAssertEqual(LMDBStore.verify(directory: dir + "/nothing-here"), .sound(entries: 0, pages: 0))
    }

    func testTruncatedFileIsDamagedBeforeAnythingMapsIt() throws {
        let size = try closedCache(300)
        XCTAssertEqual(truncate(dir + "/data.mdb", off_t(size - 4096)), 0)
        guard case .damaged(let why) = LMDBStore.verify(directory: dir) else { return XCTFail("truncation not seen") }
        XCTAssertTrue(why.hasSuffix("truncated"), why)
        XCTAssertThrowsError(try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true)) {
            guard case .damaged? = $0 as? LMDBStoreError else { return XCTFail("\($0)") }
        }
        let store = try LMDBStore(directory: dir, mapSizeBytes: 8 << 20)
        XCTAssertNotNil(store.movedAsidePath)
        XCTAssertEqual(store.count, 0)
    }

    func testRecordFailingItsChecksumMakesTheFileDamaged() throws {
        try closedCache(30)
        var bytes = CacheRecord.encode(Self.record("v-1.example").entry, lastUsed: 1)
        bytes[40] ^= 0x10
        try rawPut(database: "entries", ["v-1.example": bytes])
        XCTAssertEqual(LMDBStore.verify(directory: dir),
                       .damaged("the record of 'v-1.example': cache record does not match its checksum"))
    }

    func testUnaccountedPagesMakeTheFileDamaged() throws {
        let size = try closedCache(300)
        // Zero the free list's root page: its pages are no longer accounted for.
        let h = try XCTUnwrap(FileHandle(forUpdatingAtPath: dir + "/data.mdb"))
        let metas = try XCTUnwrap(try h.read(upToCount: 4096 + 152))
        func u64(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(metas[at + $1]) << (8 * $1) } }
        let newer = u64(144) >= u64(4096 + 144) ? 0 : 4096
        let freeRoot = u64(newer + 80)
        XCTAssertLessThan(freeRoot * 4096, size)
        try h.seek(toOffset: UInt64(freeRoot * 4096 + 16))
        try h.write(contentsOf: Data(repeating: 0, count: 4096 - 16))
        try h.close()
        guard case .damaged = LMDBStore.verify(directory: dir) else { return XCTFail("a zeroed free-list page was not seen") }
    }

    /// The verifier child gets a sanitizer's options (so its reports land where the run collects
    /// them), with the sanitizer's SIGSEGV and SIGBUS handlers off: dying of those is its verdict.
    func testVerifierChildGetsSanitizerOptionsWithCrashSignalsLeftToTheVerdict() throws {
        let saved = getenv("ASAN_OPTIONS").map { String(cString: $0) }
        defer { if let saved { setenv("ASAN_OPTIONS", saved, 1) } else { unsetenv("ASAN_OPTIONS") } }
        setenv("ASAN_OPTIONS", "log_path=/tmp/mxr-reports/asan", 1)
        let echo = CacheVerifier(executable: "/bin/sh", arguments: ["-c", "echo \"damaged: $ASAN_OPTIONS\"; exit 1", "sh"])
        XCTAssertEqual(echo.verify(dir), .damaged("log_path=/tmp/mxr-reports/asan:handle_segv=0:handle_sigbus=0"))
        unsetenv("ASAN_OPTIONS")
        XCTAssertEqual(echo.verify(dir), .damaged(""), "no sanitizer, no options")
    }

    func testCleanCloseMarkSparesTheVerifierUntilTheFileChanges() throws {
        try closedCache(10)
        XCTAssertTrue(CleanCloseMark.matches(dir), "an orderly close leaves a matching mark")
        // A verifier that cannot run makes an unmarked file unusable: only the mark lets it through.
        let broken = CacheVerifier(executable: "/nonexistent/verifier", arguments: [])
        XCTAssertEqual(broken.verify(dir), .unavailable("cannot run /nonexistent/verifier: No such file or directory"))
        let reader = try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true, verifier: broken)
        XCTAssertEqual(reader.count, 6)
        reader.close()
        try rawPut(database: "entries", ["extra.example": CacheRecord.encode(Self.record("extra.example").entry, lastUsed: 1)])
        XCTAssertFalse(CleanCloseMark.matches(dir), "written since the mark")
        XCTAssertThrowsError(try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true, verifier: broken)) {
            guard case .damaged(let why)? = $0 as? LMDBStoreError else { return XCTFail("\($0)") }
            XCTAssertTrue(why.contains("could not be verified"), why)
        }
        do {
            let writer = try LMDBStore(directory: dir, mapSizeBytes: 8 << 20)
            XCTAssertFalse(CleanCloseMark.matches(dir), "a writer removes the mark before its first change")
            writer.close()
        }
        XCTAssertTrue(CleanCloseMark.matches(dir))
    }

    func testAtMostTwoDamagedFilesAreKept() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for old in ["data.mdb.bad-20200101T000000Z", "data.mdb.bad-20210101T000000Z", "data.mdb.bad-20220101T000000Z"] {
            _ = FileManager.default.createFile(atPath: dir + "/" + old, contents: Data([1]))
        }
        try Data(repeating: 1, count: 9000).write(to: URL(fileURLWithPath: dir + "/data.mdb"))
        let moved = try XCTUnwrap(LMDBStore.quarantine(dir))
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("data.mdb.bad-") }.sorted()
        XCTAssertEqual(kept, ["data.mdb.bad-20220101T000000Z", (moved as NSString).lastPathComponent])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/data.mdb"))
    }

    func testCacheLeftOpenBeforeAnotherBootIsRebuiltButCleanCloseIsKept() throws {
        try XCTSkipIf(LMDBStore.currentBootID() == nil, "no boot id on this system")
        do {
            let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
            try store.put(Self.record("kept.example"))
            store.close()
        }
        try rawMetaPut(["boot_id": "another-boot"]) // closed cleanly, then the machine restarted
        do {
            let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
            XCTAssertNil(store.rebuildReason)
            XCTAssertNotNil(store.get("kept.example"))
            store.close()
        }
        try rawMetaPut(["boot_id": "another-boot", "clean": "0"]) // open for writing when the machine died
        let store = try LMDBStore(directory: dir, mapSizeBytes: 1 << 20)
        XCTAssertNotNil(store.rebuildReason)
        XCTAssertEqual(store.count, 0)
    }

    // MARK: Read-only

    func testReadOnlyOpenCreatesNothing() throws {
        XCTAssertThrowsError(try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true)) {
            XCTAssertEqual($0 as? LMDBStoreError, .missing(path: dir))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        XCTAssertThrowsError(try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    func testReadOnlyOpenReadsAndRefusesWrites() throws {
        do {
            let store = try LMDBStore(directory: dir, mapSizeBytes: 2 << 20)
            try store.put(Self.record("a.example"))
            store.close()
        }
        let reader = try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true)
        XCTAssertEqual(reader.get("a.example")?.serverName, "a.example")
        XCTAssertEqual(reader.statistics.capacityBytes, 2 << 20, "the writer's map size")
        XCTAssertThrowsError(try reader.put(Self.record("b.example"))) { XCTAssertEqual($0 as? LMDBStoreError, .readOnly) }
        XCTAssertFalse(reader.delete("a.example"))
        XCTAssertEqual(reader.deleteAll { _ in true }, 0)
    }

    // MARK: A full map

    func testFullMapEvictsExpiredFirstThenLeastRecentlyUsedAndKeepsEveryWrite() throws {
        try fillPastCapacity(evictingAhead: true)
    }

    /// Without the headroom kept by evicting ahead, an eviction transaction may itself not fit (LMDB
    /// copies every page it changes); the last resort then empties the cache. No write is lost.
    func testMapFullWithoutHeadroomStillKeepsEveryWrite() throws {
        try fillPastCapacity(evictingAhead: false)
    }

    func fillPastCapacity(evictingAhead: Bool) throws {
        let store = try LMDBStore(directory: dir, mapSizeBytes: 256 << 10)
        store.evictsAhead = evictingAhead
        let base = wallClockSeconds()
        let expired = (0..<30).map { "expired-\($0).example" }
        let old = (0..<30).map { "old-\($0).example" }
        for k in expired { try store.put(Self.record(k, payload: 400, expiresIn: -100, lastUsed: base + 1_000_000)) }
        for (j, k) in old.enumerated() { try store.put(Self.record(k, payload: 400, lastUsed: base - 1000 + Double(j))) }
        let hot = old[0]
        var firstOldEvictedAt: Int?
        var written: [String] = []
        for i in 0..<1500 {
            let key = "new-\(i).example"
            try store.put(Self.record(key, payload: 300 + (i % 7) * 50, lastUsed: base + Double(i)))
            written.append(key)
            XCTAssertNotNil(store.get(key), "the write that hit the full map is kept: \(key)")
            store.touch([hot: base + Double(i) + 0.5])
            if evictingAhead, firstOldEvictedAt == nil, old.dropFirst().contains(where: { store.get($0) == nil }) {
                firstOldEvictedAt = i
                XCTAssertTrue(expired.allSatisfy { store.get($0) == nil }, "expired entries go before live ones")
            }
        }
        let stats = store.lmdbStatistics
        XCTAssertGreaterThan(stats.evictions, 0)
        XCTAssertLessThan(store.count, 1500)
        XCTAssertLessThanOrEqual(stats.usedBytes, 256 << 10)
        XCTAssertNil(store.get("new-0.example"))
        try store.put(Self.record("after.example"))
        XCTAssertNotNil(store.get("after.example"))
        guard evictingAhead else { return XCTAssertGreaterThan(stats.resets, 0) }
        XCTAssertEqual(stats.resets, 0, "evicting ahead keeps room for the evictions: \(stats)")
        XCTAssertNotNil(firstOldEvictedAt)
        XCTAssertNotNil(store.get(hot), "recently used survives")
        XCTAssertTrue(old.dropFirst().allSatisfy { store.get($0) == nil }, "least recently used go first")
        XCTAssertTrue(written.suffix(20).allSatisfy { store.get($0) != nil }, "the newest stay")
    }

    func testRecordLargerThanTheMapIsAClearErrorAndALargeOneEvictsEverything() throws {
        let store = try LMDBStore(directory: dir, mapSizeBytes: 256 << 10)
        for i in 0..<100 { try store.put(Self.record("n-\(i).example", payload: 500)) }
        XCTAssertThrowsError(try store.put(Self.record("huge.example", payload: 300 << 10))) {
            guard case .recordTooLarge? = $0 as? LMDBStoreError else { return XCTFail("\($0)") }
        }
        try store.put(Self.record("big.example", payload: 150 << 10))
        XCTAssertEqual(store.get("big.example")?.answer?.targets.first?.host.utf8.count, 150 << 10)
        try store.put(Self.record("after.example"))
        XCTAssertNotNil(store.get("after.example"))
    }

    // MARK: SIGKILL during a write storm

    /// The child half of the crash test: writes until killed, printing each committed key.
    func testCrashChildWriter() throws {
        guard let dir = ProcessInfo.processInfo.environment[Self.crashChildVariable] else { return }
        let store = try LMDBStore(directory: dir, mapSizeBytes: 256 << 20)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<200_000 {
            let key = "crash-\(i).example.org"
            try store.put(Self.record(key, payload: Int.random(in: 50...3000, using: &rng)))
            if i % 64 == 63 { store.touch(["crash-\(i / 2).example.org": wallClockSeconds()]) }
            let line = Array("ACK \(key)\n".utf8)
            _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        }
        sleep(60)
    }

    func testSIGKILLDuringWriteStormKeepsEveryCommittedEntry() throws {
        #if os(Linux)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: exe)
        child.arguments = ["MXAdaptersTests.LMDBStoreTests/testCrashChildWriter"]
        var env = ProcessInfo.processInfo.environment
        env[Self.crashChildVariable] = dir
        child.environment = env
        let pipe = Pipe()
        child.standardOutput = pipe
        child.standardError = FileHandle.nullDevice
        try child.run()

        let fd = pipe.fileHandleForReading.fileDescriptor
        var acked: [String] = []
        var pending: [UInt8] = []
        var killed = false
        var checkedReadOnly = false
        let deadline = wallClockSeconds() + 60
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            pending += chunk[0..<n]
            while let nl = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                if line.hasPrefix("ACK ") { acked.append(String(line.dropFirst(4))) }
            }
            if !checkedReadOnly && acked.count >= 500 {
                // Another process reads the cache while the writer is busy (mxresolvectl's case).
                let reader = try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true)
                XCTAssertNotNil(reader.get(acked[0]))
                XCTAssertNotNil(reader.get(acked[499]))
                XCTAssertGreaterThanOrEqual(reader.count, 500)
                reader.close()
                checkedReadOnly = true
            }
            if !killed && (acked.count >= 3000 || wallClockSeconds() > deadline) {
                kill(child.processIdentifier, SIGKILL)
                killed = true
            }
        }
        child.waitUntilExit()
        XCTAssertTrue(killed)
        XCTAssertEqual(child.terminationReason, .uncaughtSignal)
        XCTAssertEqual(child.terminationStatus, SIGKILL)
        XCTAssertGreaterThanOrEqual(acked.count, 3000)
        XCTAssertTrue(checkedReadOnly)

        let stat = Process()
        stat.executableURL = URL(fileURLWithPath: "/usr/bin/mdb_stat")
        stat.arguments = ["-e", "-a", dir]
        stat.standardOutput = FileHandle.nullDevice
        try stat.run()
        stat.waitUntilExit()
        XCTAssertEqual(stat.terminationStatus, 0, "mdb_stat reads the file the killed writer left")

        let store = try LMDBStore(directory: dir, mapSizeBytes: 256 << 20)
        XCTAssertNil(store.rebuildReason)
        let missing = acked.filter { store.get($0) == nil }
        XCTAssertEqual(missing, [], "every acknowledged write survives SIGKILL")
        XCTAssertGreaterThanOrEqual(store.count, acked.count)
        try store.put(Self.record("after-crash.example"))
        XCTAssertNotNil(store.get("after-crash.example"))
        #else
        throw XCTSkip("uses /proc/self/exe")
        #endif
    }

    // MARK: Helpers

    /// Writes keys into the `meta` database directly, as another version (or a crash) would have left them.
    func rawMetaPut(_ pairs: [String: String]) throws {
        try rawPut(database: "meta", pairs.mapValues { Array($0.utf8) })
    }

    /// Writes raw values into one of the cache's databases, bypassing the store (which must be closed).
    func rawPut(database: String, _ pairs: [String: [UInt8]]) throws {
        var env: OpaquePointer?
        XCTAssertEqual(mdb_env_create(&env), 0)
        defer { mdb_env_close(env) }
        mdb_env_set_maxdbs(env, 4)
        XCTAssertEqual(mdb_env_open(env, dir, 0, 0o640), 0)
        var txn: OpaquePointer?
        XCTAssertEqual(mdb_txn_begin(env, nil, 0, &txn), 0)
        var dbi: MDB_dbi = 0
        XCTAssertEqual(mdb_dbi_open(txn, database, UInt32(MDB_CREATE), &dbi), 0)
        for (k, v) in pairs {
            var kb = Array(k.utf8), vb = v
            let rc = kb.withUnsafeMutableBytes { kp in
                vb.withUnsafeMutableBytes { vp in
                    var key = MDB_val(mv_size: kp.count, mv_data: kp.baseAddress)
                    var val = MDB_val(mv_size: vp.count, mv_data: vp.baseAddress)
                    return mdb_put(txn, dbi, &key, &val, 0)
                }
            }
            XCTAssertEqual(rc, 0)
        }
        XCTAssertEqual(mdb_txn_commit(txn), 0)
    }
}

extension LMDBStore {
    /// Stores one of `LMDBStoreTests.record`'s entries with its last-use time.
    func put(_ record: (entry: CacheEntry, lastUsed: Double)) throws {
        try put(record.entry, lastUsed: record.lastUsed)
    }
}
