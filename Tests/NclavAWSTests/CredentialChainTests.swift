import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NclavCloudFakes
import NclavDrivers
import NclavTestSupport
import Synchronization
import Testing

@testable import NclavAWS

/// In-test servers that answer like the EC2 instance metadata service (IMDSv2: a PUT for a
/// session token, then token-authenticated GETs; a GET without the token is refused, as on an
/// instance with IMDSv1 disabled) and the ECS container credentials endpoint.
actor MetadataServer {
    /// Known once `start` has bound the server (on a port the kernel picks).
    nonisolated var port: Int { boundPort.withLock { $0 } }
    private nonisolated let boundPort = Mutex(0)
    private var task: Task<Void, any Error>?
    private(set) var requests: [String] = []

    init() throws {}

    func record(_ line: String) { requests.append(line) }

    static func credentialsJSON(_ key: String, expiresIn seconds: TimeInterval = 3600) -> String {
        let expiration = ISO8601DateFormatter().string(from: Date().addingTimeInterval(seconds))
        return
            #"{"Code":"Success","LastUpdated":"2026-11-22T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"\#(key)","SecretAccessKey":"secret-\#(key)","Token":"token-\#(key)","Expiration":"\#(expiration)"}"#
    }

    func start(role: String? = "web-role", ecsAuthorization: String? = nil) async throws {
        let router = Router()
        let imdsToken = "imds-session-\(UUID().uuidString)"
        let server = self
        router.put("/latest/api/token") { request, _ -> Response in
            await server.record("PUT /latest/api/token")
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token-ttl-seconds")!] != nil else { return Response(status: .badRequest) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: imdsToken)))
        }
        router.get("/latest/meta-data/iam/security-credentials/") { request, _ -> Response in
            await server.record("GET role list")
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == imdsToken else { return Response(status: .unauthorized) }
            guard let role else { return Response(status: .notFound) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: role)))
        }
        router.get("/latest/meta-data/iam/security-credentials/:role") { request, context -> Response in
            await server.record("GET role \(context.parameters.get("role") ?? "")")
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == imdsToken, context.parameters.get("role") == role else {
                return Response(status: .unauthorized)
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: Self.credentialsJSON("ASIAIMDS"))))
        }
        router.get("/v2/credentials/:id") { request, _ -> Response in
            await server.record("GET ecs")
            if let ecsAuthorization, request.headers[.authorization] != ecsAuthorization { return Response(status: .forbidden) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: Self.credentialsJSON("ASIAECS"))))
        }
        let started = try await LoopbackServer.run(router, label: "metadata-server")
        task = started.task
        boundPort.withLock { $0 = started.port }
    }

    func stop() { task?.cancel() }
}

@Suite("AWS credential chain")
struct CredentialChainTests {
    let home: URL

    init() throws { home = try TestSupport.makeScratchDirectory("aws-home") }

    func write(_ text: String, to path: String) throws {
        let url = home.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    func chain(_ environment: [String: String]) -> AWSCredentialChain {
        var environment = environment
        // No test may wander off to a real 169.254.169.254.
        if environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == nil { environment["AWS_EC2_METADATA_DISABLED"] = "true" }
        return .standard(environment: environment, home: home.path)
    }

    @Test("environment variables come first, with the session token")
    func environmentFirst() async throws {
        try write("[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = p\n", to: ".aws/credentials")
        let chain = chain(["AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"])
        let credentials = try await chain.credentials()
        #expect(credentials == AWSCredentials(accessKeyID: "AKIAENV", secretAccessKey: "s", sessionToken: "t"))
        #expect(await chain.currentSource == "environment")
        #expect(!credentials.description.contains("s,") && credentials.description.contains("secret hidden"))
    }

    @Test("half-set environment credentials stop the chain with what is missing (no silent fall-through to another identity)")
    func halfEnvironment() async throws {
        try write("[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = p\n", to: ".aws/credentials")
        await #expect(throws: AWSCredentialError.self) { try await chain(["AWS_ACCESS_KEY_ID": "AKIAENV"]).credentials() }
        do { _ = try await chain(["AWS_ACCESS_KEY_ID": "AKIAENV"]).credentials() } catch {
            #expect(error.description.contains("AWS_SECRET_ACCESS_KEY is not"))
        }
    }

    @Test("ECS container credentials (relative URI is fixed to 169.254.170.2; full URI with its authorization token file)")
    func container() async throws {
        let server = try MetadataServer()
        try await server.start(ecsAuthorization: "Bearer ecs-secret")
        defer { Task { await server.stop() } }
        try write("Bearer ecs-secret\n", to: "ecs-token")
        let chain = chain([
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:\(server.port)/v2/credentials/task",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": home.appendingPathComponent("ecs-token").path,
        ])
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyID == "ASIAECS" && credentials.sessionToken == "token-ASIAECS" && credentials.expiration != nil)
        #expect(await chain.currentSource == "ECS container credentials")
        // Plain http to anywhere but loopback / the ECS agent is refused, as the SDKs do.
        do {
            _ = try await self.chain(["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://metadata.example.com/creds"]).credentials()
            Issue.record("http to a remote host was accepted")
        } catch { #expect(error.description.contains("only loopback")) }
        // A wrong authorization token is a failure of that source, said plainly.
        do {
            _ = try await self.chain([
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:\(server.port)/v2/credentials/task",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Bearer wrong",
            ]).credentials()
            Issue.record("a wrong container token was accepted")
        } catch { #expect(error.description.contains("answered 403")) }
    }

    @Test("IMDSv2: a session token first, then the role's credentials; cached until five minutes before expiry")
    func instanceMetadata() async throws {
        let server = try MetadataServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let chain = chain(["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:\(server.port)/"])
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyID == "ASIAIMDS" && credentials.secretAccessKey == "secret-ASIAIMDS")
        #expect(await chain.currentSource == "EC2 instance metadata (IMDSv2)")
        #expect(await server.requests == ["PUT /latest/api/token", "GET role list", "GET role web-role"])
        _ = try await chain.credentials()
        #expect(await server.requests.count == 3)  // cached
        // Close to expiry: fetched again.
        _ = try await chain.credentials(now: Date().addingTimeInterval(3600 - 60))
        #expect(await server.requests.count == 6)
    }

    @Test("an instance without a role falls through to the profile; env and ECS win over IMDS")
    func precedence() async throws {
        let server = try MetadataServer()
        try await server.start(role: nil)
        defer { Task { await server.stop() } }
        try write("[profile ops]\nregion = eu-west-1\n", to: ".aws/config")
        try write("[ops]\naws_access_key_id = AKIAOPS\naws_secret_access_key = o\n", to: ".aws/credentials")
        let imds = "http://127.0.0.1:\(server.port)"
        let viaProfile = chain(["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds, "AWS_PROFILE": "ops"])
        #expect(try await viaProfile.credentials().accessKeyID == "AKIAOPS")
        #expect(await viaProfile.currentSource == "shared profile")
        let viaECS = chain([
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds, "AWS_PROFILE": "ops",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:\(server.port)/v2/credentials/x",
        ])
        #expect(try await viaECS.credentials().accessKeyID == "ASIAECS")
        let viaEnv = chain([
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds, "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "e",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:\(server.port)/v2/credentials/x",
        ])
        #expect(try await viaEnv.credentials().accessKeyID == "AKIAENV")
    }

    @Test("profiles: config-file sections, AWS_SHARED_CREDENTIALS_FILE, and clear refusals")
    func profiles() async throws {
        try write(
            "[default]\n# comment\naws_access_key_id=AKIADEFAULT\naws_secret_access_key = d\n\n[profile assume]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n",
            to: "cfg")
        let config = home.appendingPathComponent("cfg").path
        #expect(
            try await chain(["AWS_CONFIG_FILE": config, "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"]).credentials().accessKeyID == "AKIADEFAULT")
        do {
            _ = try await chain(["AWS_CONFIG_FILE": config, "AWS_PROFILE": "assume"]).credentials()
            Issue.record("a role profile was accepted")
        } catch { #expect(error.description.contains("--aws-role-arn")) }
        do {
            _ = try await chain(["AWS_CONFIG_FILE": config, "AWS_PROFILE": "nope"]).credentials()
            Issue.record("a missing named profile was accepted")
        } catch { #expect(error.description.contains("AWS_PROFILE=nope")) }
    }

    @Test("when nothing works, the error lists every source tried and how to fix it")
    func nothing() async throws {
        do {
            _ = try await chain(["AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"]).credentials()
            Issue.record("credentials appeared from nowhere")
        } catch {
            let text = error.description
            for source in ["environment", "ECS container credentials", "EC2 instance metadata", "shared profile"] { #expect(text.contains(source)) }
            #expect(text.contains("AWS_ACCESS_KEY_ID"))
        }
    }
}

@Suite("AWS endpoints and XML")
struct AWSEndpointTests {
    @Test("AWS_ENDPOINT_URL_<SERVICE> beats AWS_ENDPOINT_URL beats the public endpoint; global services sign for us-east-1")
    func resolution() throws {
        let env = [
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_ROUTE_53": "http://127.0.0.1:6000",
            "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API": "https://tagging.internal",
        ]
        let resolver = AWSEndpointResolver(environment: env)
        #expect(
            try resolver.endpoint(for: .route53, region: "eu-west-1") == .init(url: URL(string: "http://127.0.0.1:6000")!, signingRegion: "us-east-1")
        )
        #expect(
            try resolver.endpoint(for: .ec2, region: "eu-west-1") == .init(url: URL(string: "http://127.0.0.1:5000")!, signingRegion: "eu-west-1"))
        #expect(try resolver.endpoint(for: .tagging, region: "eu-west-1").url.host == "tagging.internal")
        let plain = AWSEndpointResolver(environment: [:])
        #expect(try plain.endpoint(for: .ec2, region: "ap-south-1").url.absoluteString == "https://ec2.ap-south-1.amazonaws.com")
        #expect(
            try plain.endpoint(for: .organizations, region: "ap-south-1")
                == .init(url: URL(string: "https://organizations.us-east-1.amazonaws.com")!, signingRegion: "us-east-1"))
        #expect(try plain.endpoint(for: .iam, region: "eu-west-1").url.absoluteString == "https://iam.amazonaws.com")
        let ignored = AWSEndpointResolver(environment: env.merging(["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"]) { $1 })
        #expect(try ignored.endpoint(for: .sts, region: "us-west-2").url.absoluteString == "https://sts.us-west-2.amazonaws.com")
        #expect(throws: AWSEndpointResolver.ResolveError.badURL(variable: "AWS_ENDPOINT_URL", value: "localhost:5000")) {
            try AWSEndpointResolver(environment: ["AWS_ENDPOINT_URL": "localhost:5000"]).endpoint(for: .sts, region: "us-east-1")
        }
        #expect(
            resolver.overrides.keys.sorted() == ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API", "AWS_ENDPOINT_URL_ROUTE_53"])
    }

    @Test("the XML reader: namespaces dropped, entities and CDATA decoded, malformed input refused with the offset")
    func xml() throws {
        let text = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
              <Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>Role a&amp;b &lt;x&gt; &#233;&#x41;</Message></Error>
              <!-- note --><ns:Extra a="1>2"><![CDATA[<raw>]]></ns:Extra><Empty/>
            </ErrorResponse>
            """
        let xml = try AWSXML(parsing: Data(text.utf8))
        #expect(xml.name == "ErrorResponse")
        #expect(xml.value("Code") == "NoSuchEntity")
        #expect(xml.value("Message") == "Role a&b <x> éA")
        #expect(xml["Extra"]?.text == "<raw>")
        #expect(xml["Empty"] != nil)
        for bad in ["<a><b></a>", "<a>", "<a>&bogus;</a>", "", "<a></a><b/>"] {
            #expect(throws: AWSXML.ParseError.self) { try AWSXML(parsing: Data(bad.utf8)) }
        }
    }
}
