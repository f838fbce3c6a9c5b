import XCTest
@testable import MXCheck
import MXCore

/// Canonical JSON and ed25519, against the spec's and RFC 8032's own examples.
final class CanonicalJSONTests: XCTestCase {
    func canonical(_ text: String) throws -> String {
        String(decoding: try JSONValue.parse(text).canonicalBytes(), as: UTF8.self)
    }

    /// The examples of the spec's appendix "Canonical JSON".
    func testSpecExamples() throws {
        XCTAssertEqual(try canonical("{}"), "{}")
        XCTAssertEqual(try canonical(#"{"one": 1, "two": "Two"}"#), #"{"one":1,"two":"Two"}"#)
        XCTAssertEqual(try canonical(#"{"b": "2", "a": "1"}"#), #"{"a":"1","b":"2"}"#)
        XCTAssertEqual(try canonical(#"{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}"#),
                       #"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#)
        XCTAssertEqual(try canonical(#"{"a": "日本語"}"#), #"{"a":"日本語"}"#)
        XCTAssertEqual(try canonical(#"{"本": 2, "日": 1}"#), #"{"日":1,"本":2}"#)
        XCTAssertEqual(try canonical(#"{"a": "\u65E5"}"#), #"{"a":"日"}"#)
        XCTAssertEqual(try canonical(#"{"a": null}"#), #"{"a":null}"#)
        XCTAssertEqual(try canonical(#"{"a": -0}"#), #"{"a":0}"#)
    }

    func testEscapesOnlyWhatMustBe() throws {
        XCTAssertEqual(try canonical(#"["\/\"\\\n\u0001\u007f"]"#), "[\"/\\\"\\\\\\n\\u0001\u{7f}\"]")
        XCTAssertEqual(try canonical(#"["\ud83d\ude00"]"#), "[\"😀\"]")
    }

    func testKeysSortByCodePoint() throws {
        // U+FF21 (fullwidth A) sorts after U+1F600 by UTF-16 but before it by code point.
        XCTAssertEqual(try canonical("{\"😀\":1,\"Ａ\":2,\"a\":3}"), "{\"a\":3,\"Ａ\":2,\"😀\":1}")
    }

    func testRefusesWhatCanonicalJSONCannotHold() {
        XCTAssertThrowsError(try JSONValue.parse("1.5").canonicalBytes())
        XCTAssertThrowsError(try JSONValue.parse("9007199254740992").canonicalBytes())
        XCTAssertNoThrow(try JSONValue.parse("9007199254740991").canonicalBytes())
    }

    func testRefusesBadJSON() {
        for bad in [#"{"a":1,"a":2}"#, "[1,]", "{", "\"\\ud800\"", "01", "[1] x", "\"\u{01}\"", String(repeating: "[", count: 100)] {
            XCTAssertThrowsError(try JSONValue.parse(bad), bad)
        }
    }

    /// RFC 8032 §7.1, TEST 1 to 3, and the same signatures over other messages.
    func testEd25519RFC8032Vectors() throws {
        let vectors: [(key: String, message: String, signature: String)] = [
            ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
             "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
            ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
             "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
            ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
             "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
        ]
        for v in vectors {
            let key = hex(v.key), message = hex(v.message), signature = hex(v.signature)
            XCTAssertTrue(Ed25519.verify(publicKey: key, signature: signature, message: message))
            XCTAssertFalse(Ed25519.verify(publicKey: key, signature: signature, message: message + [0]))
            var flipped = signature
            flipped[10] ^= 1
            XCTAssertFalse(Ed25519.verify(publicKey: key, signature: flipped, message: message))
        }
        XCTAssertFalse(Ed25519.verify(publicKey: [1, 2, 3], signature: hex(vectors[0].signature), message: []))
    }

    func testUnpaddedBase64() {
        XCTAssertEqual(UnpaddedBase64.decode("")!, [])
        XCTAssertEqual(UnpaddedBase64.decode("Zg")!, Array("f".utf8))
        XCTAssertEqual(UnpaddedBase64.decode("Zm8")!, Array("fo".utf8))
        XCTAssertEqual(UnpaddedBase64.decode("Zm9v")!, Array("foo".utf8))
        XCTAssertEqual(UnpaddedBase64.decode("Zm9vYg==")!, Array("foob".utf8))
        XCTAssertNil(UnpaddedBase64.decode("Zm9v!"))
        XCTAssertNil(UnpaddedBase64.decode("Z"))
    }

    func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }
}
