import Foundation
import Testing

@testable import NclavAWS

/// AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite): the example
/// credentials, region `us-east-1`, service `service`, time 2015-08-30T12:36:00Z.
@Suite("SigV4 against AWS's test vectors")
struct SigV4Tests {
    let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    func sign(_ method: String, _ path: String, _ query: [(String, String)] = []) -> SigV4.Signed {
        SigV4.sign(
            method: method, path: path, query: query,
            headers: [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")],
            payloadHash: emptyHash, credentials: credentials, region: "us-east-1", service: "service", amzDate: "20150830T123600Z")
    }

    @Test("get-vanilla: canonical request, string to sign and the published Authorization header")
    func getVanilla() {
        let signed = sign("GET", "/")
        #expect(signed.canonicalRequest == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(emptyHash)")
        #expect(signed.stringToSign.hasSuffix("\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"))
        #expect(
            signed.authorization
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    }

    @Test("get-vanilla-query-order-key-case: query parameters are sorted before signing")
    func queryOrder() {
        #expect(
            sign("GET", "/", [("Param2", "value2"), ("Param1", "value1")]).signature
                == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    @Test("post-vanilla")
    func postVanilla() {
        #expect(sign("POST", "/").signature == "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
    }

    @Test("get-utf8: a non-ASCII path is encoded once, raw or already encoded")
    func utf8Path() {
        #expect(sign("GET", "/ሴ").signature == "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85")
        #expect(sign("GET", "/%E1%88%B4").signature == "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85")
    }

    @Test("the derived signing key matches the published one; the secret never shows in descriptions")
    func signingKey() {
        let key = SigV4.signingKey(secret: credentials.secretAccessKey, date: "20150830", region: "us-east-1", service: "service")
        #expect(key.withUnsafeBytes { SigV4.hex(Array($0)) } == "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75")
        #expect(!"\(credentials)".contains("wJalr"))
        #expect(SigV4.amzDate(Date(timeIntervalSince1970: 1_440_938_160)) == "20150830T123600Z")
    }
}
