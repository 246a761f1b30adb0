import Crypto
import Foundation

/// AWS Signature Version 4 for a request's headers, verified against AWS's published test
/// suite (`get-vanilla`, `get-vanilla-query-order-key-case`, `post-vanilla`, `get-utf8`).
public enum SigV4 {
    public struct Signed: Sendable, Equatable {
        public let authorization: String
        public let signedHeaders: String
        public let signature: String
        public let canonicalRequest: String
        public let stringToSign: String
    }

    /// - Parameters:
    ///   - path: the request path as sent (already percent-encoded where needed).
    ///   - query: name/value pairs, unencoded.
    ///   - headers: every header to sign (must include `host` and `x-amz-date`).
    public static func sign(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String,
        credentials: AWSCredentials, region: String, service: String, amzDate: String
    ) -> Signed {
        let date = String(amzDate.prefix(8))
        var grouped: [String: [String]] = [:]
        for (name, value) in headers { grouped[name.lowercased(), default: []].append(trimmed(value)) }
        let canonicalHeaders: [(String, String)] = grouped.keys.sorted().map { ($0, grouped[$0]!.joined(separator: ",")) }
        let signedHeaders = canonicalHeaders.map(\.0).joined(separator: ";")
        let encodedQuery: [(String, String)] = query.map { (encode($0.0), encode($0.1)) }
        let sortedQuery = encodedQuery.sorted { (a: (String, String), b: (String, String)) -> Bool in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
        let canonicalQuery: String = sortedQuery.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let headerBlock: String = canonicalHeaders.map { "\($0.0):\($0.1)\n" }.joined()
        let parts: [String] = [method.uppercased(), canonicalPath(path), canonicalQuery, headerBlock, signedHeaders, payloadHash]
        let canonicalRequest = parts.joined(separator: "\n")
        let scope = "\(date)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
        let key = signingKey(secret: credentials.secretAccessKey, date: date, region: region, service: service)
        let signature = hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        return Signed(
            authorization: "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)",
            signedHeaders: signedHeaders, signature: signature, canonicalRequest: canonicalRequest, stringToSign: stringToSign)
    }

    public static func signingKey(secret: String, date: String, region: String, service: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)))
        }
        let dateKey = hmac(SymmetricKey(data: Data("AWS4\(secret)".utf8)), date)
        return hmac(hmac(hmac(dateKey, region), service), "aws4_request")
    }

    public static func payloadHash(_ body: Data) -> String { hex(SHA256.hash(data: body)) }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// RFC 3986 unreserved characters stay; everything else is %XX (uppercase), per AWS.
    public static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(Character(UnicodeScalar(byte)))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// Each segment decoded then encoded once: `/%E1%88%B4` and `/ሴ` sign alike.
    static func canonicalPath(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { encode(String($0).removingPercentEncoding ?? String($0)) }.joined(separator: "/")
    }

    static func trimmed(_ value: String) -> String {
        value.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hex(_ digest: some Digest) -> String { hex(Array(digest)) }
    static func hex(_ code: HashedAuthenticationCode<SHA256>) -> String { hex(Array(code)) }
}
