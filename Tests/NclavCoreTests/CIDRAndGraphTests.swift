import Foundation
import NclavCore
import Testing

@Suite("IPv4 CIDR blocks")
struct CIDRTests {
    @Test("parses and prints canonical blocks")
    func parses() throws {
        let block = try #require(IPv4CIDR("10.0.0.0/16"))
        #expect(block.description == "10.0.0.0/16")
        #expect(!block.hasHostBits)
        #expect(IPv4CIDR("10.0.0.1/16")?.hasHostBits == true)
    }

    @Test(
        "refuses malformed text",
        arguments: ["10.0.0.0", "10.0.0/16", "10.0.0.256/24", "10.0.0.0/33", "a.b.c.d/8", "10.0.0.0/-1", "10.0.0.0/1x", "1..2.3/8"])
    func refuses(_ text: String) {
        #expect(IPv4CIDR(text) == nil)
    }

    @Test("containment and overlap")
    func containment() throws {
        let vpc = try #require(IPv4CIDR("10.0.0.0/16"))
        #expect(vpc.contains(try #require(IPv4CIDR("10.0.3.0/24"))))
        #expect(!vpc.contains(try #require(IPv4CIDR("10.1.0.0/24"))))
        #expect(!vpc.contains(try #require(IPv4CIDR("10.0.0.0/8"))))
        #expect(try #require(IPv4CIDR("10.0.1.0/24")).overlaps(try #require(IPv4CIDR("10.0.1.128/25"))))
        #expect(!(try #require(IPv4CIDR("10.0.1.0/24")).overlaps(try #require(IPv4CIDR("10.0.2.0/24")))))
    }
}

@Suite("Dependency graph")
struct DigraphTests {
    @Test("waves put every node after its dependencies")
    func waves() {
        var graph = Digraph<String>()
        graph.addEdge(from: "web", to: "api")
        graph.addEdge(from: "api", to: "db")
        graph.addEdge(from: "api", to: "queue")
        graph.addNode("docs")
        #expect(graph.waves() == [["db", "docs", "queue"], ["api"], ["web"]])
        #expect(graph.cycles().isEmpty)
    }

    @Test("reports each cycle once with its path, starting at its smallest node")
    func cycles() {
        var graph = Digraph<String>()
        graph.addEdge(from: "b", to: "c")
        graph.addEdge(from: "c", to: "a")
        graph.addEdge(from: "a", to: "b")
        graph.addEdge(from: "d", to: "d")
        graph.addEdge(from: "e", to: "a")
        #expect(graph.cycles() == [["a", "b", "c", "a"], ["d", "d"]])
        // Nodes on or behind a cycle never become ready.
        #expect(graph.waves() == [])
    }

    @Test("a long chain does not overflow the stack")
    func deepChain() {
        var graph = Digraph<Int>()
        for index in 0..<20_000 { graph.addEdge(from: index + 1, to: index) }
        #expect(graph.cycles().isEmpty)
        graph.addEdge(from: 0, to: 20_000)
        #expect(graph.cycles().first?.count == 20_002)
    }
}

@Suite("Export contracts")
struct ContractTests {
    @Test("the auth/type matrix")
    func authMatrix() {
        #expect(ExportType.http.allowedAuth == [.none, .token, .oauth, .mtls])
        #expect(ExportType.tcp.allowedAuth == [.none, .mtls, .native])
        #expect(ExportType.queue.allowedAuth == [.none, .token, .native])
    }

    @Test("required outputs per produced type")
    func requiredOutputs() {
        #expect(ExportType.http.requiredOutputs == ["hostname", "port"])
        #expect(ExportType.tcp.requiredOutputs == ["hostname", "port"])
        #expect(ExportType.queue.requiredOutputs == ["queue_url"])
    }

    @Test("every cloud provides the common context tokens plus its own")
    func contextTokens() {
        for cloud in CloudTarget.allCases {
            #expect(Array(ContextTokens.available(for: cloud).prefix(4)) == ContextTokens.common)
        }
        #expect(ContextTokens.clouds(providing: "nclav_account_id") == [.aws])
        #expect(ContextTokens.clouds(providing: "nclav_region") == [.aws, .azure, .gcp, .local])
    }

    @Test("audiences encode as they are written in YAML")
    func audienceCoding() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let encoded = try encoder.encode([ExportAudience.public, .anyEnclave, .enclave("x"), .partition("p")])
        #expect(String(decoding: encoded, as: UTF8.self) == #"["public","any_enclave",{"enclave":"x"},{"partition":"p"}]"#)
        let decoded = try JSONDecoder().decode([ExportAudience].self, from: encoded)
        #expect(decoded == [.public, .anyEnclave, .enclave("x"), .partition("p")])
    }
}
