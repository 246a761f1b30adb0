import Foundation
import IacRunner
import NclavTestSupport
import Testing

@Suite("terraform plan -json, read as it streams")
struct PlanStreamReaderTests {
    /// Lines as terraform 1.11 writes them for a plan that replaces one resource, creates
    /// another, and changes an output (trimmed of timestamps).
    static let lines = [
        #"{"@level":"info","@message":"Terraform 1.11.4","type":"version","terraform":"1.11.4","ui":"1.2"}"#,
        "There are some problems with the CLI configuration:",
        #"{"@level":"info","@message":"terraform_data.service: Plan to replace","change":{"resource":{"addr":"terraform_data.service","module":"","resource":"terraform_data.service","resource_type":"terraform_data","resource_name":"service"},"action":"replace","reason":"cannot_update"},"type":"planned_change"}"#,
        #"{"@level":"info","@message":"module.m.terraform_data.x[\"a\"]: Plan to create","change":{"resource":{"addr":"module.m.terraform_data.x[\"a\"]"},"action":"create"},"type":"planned_change"}"#,
        #"{"@level":"info","@message":"terraform_data.same: Refreshing state...","type":"refresh_start","hook":{}}"#,
        #"{"@level":"info","@message":"Plan: 2 to add, 0 to change, 1 to destroy.","changes":{"add":2,"change":0,"import":0,"remove":1,"operation":"plan"},"type":"change_summary"}"#,
        #"{"@level":"info","@message":"Outputs: 2","outputs":{"hostname":{"sensitive":false,"action":"update"},"port":{"sensitive":false,"action":"noop"}},"type":"outputs"}"#,
    ]

    @Test("planned changes and changed outputs are collected; the log gets terraform's own messages; other lines pass through")
    func reads() async {
        let reader = PlanStreamReader()
        var log: [String] = []
        for line in Self.lines { log.append(await reader.read(line)) }
        let document = await reader.document
        #expect(
            document?.resourceChanges == [
                .init(address: "terraform_data.service", action: .replace), .init(address: "module.m.terraform_data.x[\"a\"]", action: .create),
            ])
        #expect(document?.changedOutputs == ["hostname"])
        #expect(document?.summary == "1 to add, 0 to change, 1 to replace, 0 to destroy")
        #expect(log[1] == "There are some problems with the CLI configuration:")
        #expect(log.contains("terraform_data.service: Plan to replace") && log.contains("Plan: 2 to add, 0 to change, 1 to destroy."))
    }

    @Test("an error diagnostic is logged with its place and detail; without a change summary there is no plan")
    func diagnostics() async {
        let reader = PlanStreamReader()
        let text = await reader.read(
            #"{"@level":"error","@message":"Error: Call to unknown function","diagnostic":{"severity":"error","summary":"Call to unknown function","detail":"There is no function named \"nope\".","range":{"filename":"main.tf","start":{"line":3,"column":11}}},"type":"diagnostic"}"#
        )
        #expect(text == "Error: Call to unknown function\n  on main.tf line 3\nThere is no function named \"nope\".")
        #expect(await reader.document == nil)
    }

    @Test("bounded fuzz: mutated lines never crash the reader, and what it passes on is never empty for a non-empty line")
    func fuzz() async {
        var generator = SeededGenerator(seed: 20_261_206)
        let reader = PlanStreamReader()
        for round in 0..<3000 {
            var bytes = Array(Self.lines[round % Self.lines.count].utf8)
            for _ in 0..<Int.random(in: 1...6, using: &generator) where !bytes.isEmpty {
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &generator)
                case 1: bytes.remove(at: index)
                default: bytes.insert(Array(#"{}[]":,"#.utf8).randomElement(using: &generator)!, at: index)
                }
            }
            let line = String(decoding: bytes, as: UTF8.self)
            let logged = await reader.read(line)
            #expect(line.isEmpty || !logged.isEmpty, "round \(round): \(line)")
        }
    }
}
