import Foundation
import NclavTestSupport
import Testing

@testable import IacRunner

/// Which inits may write the shared plugin cache (and so must take turns).
@Suite("Provider scan for the plugin-cache gate")
struct ProviderScanTests {
    @Test("built-in terraform_data, variables, outputs and local modules install nothing")
    func builtinOnly() {
        #expect(
            !ProviderScan.needsProviders(
                """
                variable "x" { type = string }
                resource "terraform_data" "a" {
                  input = var.x
                  provisioner "local-exec" {
                    command = "echo hi"
                  }
                }
                module "m" {
                  source = "./nclav_module_source"
                }
                output "o" { value = terraform_data.a.output }
                # resource "aws_s3_bucket" "commented" {}
                """))
    }

    @Test(
        "any other provider, a provider block, required_providers or a remote module may install",
        arguments: [
            #"resource "aws_s3_bucket" "b" {}"#,
            #"data "google_project" "p" {}"#,
            #"provider "azurerm" {"#,
            "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}",
            "module \"vpc\" {\n  source = \"terraform-aws-modules/vpc/aws\"\n}",
            "module \"git\" {\n  source = \"git::https://example.com/m.git\"\n}",
        ])
    func mayInstall(_ hcl: String) {
        #expect(ProviderScan.needsProviders(hcl))
    }

    @Test("a workspace is scanned with its vendored modules, skipping .terraform; JSON config counts as unknown")
    func workspace() throws {
        let directory = try TestSupport.makeScratchDirectory("nclav-scan")
        defer { try? FileManager.default.removeItem(at: directory) }
        try #"resource "terraform_data" "a" {}"#.write(to: directory.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        let cache = directory.appendingPathComponent(".terraform/modules/x")
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        try #"resource "aws_vpc" "ignored" {}"#.write(to: cache.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        #expect(!ProviderScan.mayInstallProviders(in: directory))

        let vendored = directory.appendingPathComponent("nclav_module_source")
        try FileManager.default.createDirectory(at: vendored, withIntermediateDirectories: true)
        try #"resource "random_id" "r" {}"#.write(to: vendored.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        #expect(ProviderScan.mayInstallProviders(in: directory))

        try FileManager.default.removeItem(at: vendored)
        try "{}".write(to: directory.appendingPathComponent("extra.tf.json"), atomically: true, encoding: .utf8)
        #expect(ProviderScan.mayInstallProviders(in: directory))
    }

    @Test("only a workspace with built-in resources and no module block skips init; anything init would fetch or register means a real one")
    func selfContained() throws {
        let directory = try TestSupport.makeScratchDirectory("nclav-scan")
        defer { try? FileManager.default.removeItem(at: directory) }
        let main = directory.appendingPathComponent("main.tf")
        try #"resource "terraform_data" "a" {}\noutput "x" { value = 1 }"#.write(to: main, atomically: true, encoding: .utf8)
        #expect(ProviderScan.isSelfContained(directory))
        for other in [
            #"module "net" { source = "./net" }"#, #"resource "null_resource" "n" {}"#, #"provider "aws" {}"#,
            "terraform {\n  required_providers {}\n}",
        ] {
            try other.write(to: directory.appendingPathComponent("other.tf"), atomically: true, encoding: .utf8)
            #expect(!ProviderScan.isSelfContained(directory), "\(other)")
        }
        try FileManager.default.removeItem(at: directory.appendingPathComponent("other.tf"))
        try "{}".write(to: directory.appendingPathComponent("extra.tf.json"), atomically: true, encoding: .utf8)
        #expect(!ProviderScan.isSelfContained(directory))
    }
}
