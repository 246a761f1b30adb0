import NclavCore
import Testing

@Suite("Identifiers that become paths and URLs")
struct IdentifierTests {
    @Test("accepts lowercase letters, digits and inner hyphens", arguments: ["a", "api", "product-a-dev", "x1", String(repeating: "a", count: 63)])
    func acceptsValidIDs(_ id: String) {
        #expect(Identifier.isValid(id))
    }

    @Test("refuses anything that could escape a path or change meaning in a URL")
    func refusesDangerousIDs() {
        #expect(Identifier.problem(with: "") == .empty)
        #expect(Identifier.problem(with: "..") == .forbiddenCharacter("."))
        #expect(Identifier.problem(with: "a/b") == .forbiddenCharacter("/"))
        #expect(Identifier.problem(with: "my app") == .forbiddenCharacter(" "))
        #expect(Identifier.problem(with: "Api") == .forbiddenCharacter("A"))
        #expect(Identifier.problem(with: "café") == .forbiddenCharacter("é"))
        #expect(Identifier.problem(with: "1api") == .mustStartWithLetter)
        #expect(Identifier.problem(with: "-api") == .mustStartWithLetter)
        #expect(Identifier.problem(with: "api-") == .mustNotEndWithHyphen)
        #expect(Identifier.problem(with: String(repeating: "a", count: 64)) == .tooLong(64))
    }

    @Test("Terraform identifiers allow underscores and hyphens but not a leading digit")
    func terraformIdentifiers() {
        #expect(TerraformIdentifier.isValid("db_host"))
        #expect(TerraformIdentifier.isValid("_private"))
        #expect(TerraformIdentifier.isValid("with-hyphen"))
        #expect(!TerraformIdentifier.isValid("1st"))
        #expect(!TerraformIdentifier.isValid("has space"))
        #expect(!TerraformIdentifier.isValid(""))
    }
}
