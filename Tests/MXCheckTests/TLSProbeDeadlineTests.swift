import Foundation
import XCTest
@testable import MXCheck
import MXCore

/// The TLS probe's time bound holds against a server that keeps the handshake alive by trickling
/// bytes: a per-read timeout would restart with every byte.
final class TLSProbeDeadlineTests: XCTestCase {
    func testATricklingServerCannotStretchTheHandshakePastTheBound() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        XCTAssertEqual(withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }, 0)
        XCTAssertEqual(listen(listener, 1), 0)
        XCTAssertEqual(withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }, 0)
        let port = UInt16(bigEndian: sa.sin_port)

        let stop = PthreadMutex(false)
        let trickler = Thread {
            let conn = accept(listener, nil, nil)
            guard conn >= 0 else { return }
            defer { close(conn) }
            // A handshake record header announcing 16 KiB, then its body one byte every 100 ms.
            var header: [UInt8] = [0x16, 0x03, 0x03, 0x40, 0x00]
            _ = send(conn, &header, header.count, Int32(MSG_NOSIGNAL))
            var zero: UInt8 = 0
            for _ in 0..<150 where !stop.withLock({ $0 }) {
                usleep(100_000)
                if send(conn, &zero, 1, Int32(MSG_NOSIGNAL)) < 0 { return }
            }
        }
        trickler.start()
        defer { stop.withLock { $0 = true } }

        let started = Date()
        let result = TLSProbe.run(address: IPAddress("127.0.0.1")!, port: port, sni: "trickle.test", tlsName: "trickle.test",
                                  trust: TrustedCAs(caFile: nil), timeoutMs: 1000)
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertTrue(result.handshakeTimedOut, "\(result.handshakeError ?? "handshake ended")")
        XCTAssertEqual(result.handshakeError, "timed out: no TLS answer within \(1000 - (result.connectMs ?? 0)) ms")
        XCTAssertGreaterThanOrEqual(elapsed, 0.9)
        XCTAssertLessThan(elapsed, 2.5, "bounded by the 1 s deadline, not by the trickle's 15 s")
    }
}
