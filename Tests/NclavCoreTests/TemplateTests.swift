import NclavCore
import Testing

@Suite("Input templates")
struct TemplateTests {
    @Test("splits literals, context tokens and import outputs in order")
    func parsesSeveralPlaceholders() throws {
        let template = try Template(parsing: "postgres://{{ db.hostname }}:{{db.port}}/{{ nclav_enclave_id }}")
        #expect(
            template.segments == [
                .literal("postgres://"), .importOutput(alias: "db", key: "hostname"), .literal(":"),
                .importOutput(alias: "db", key: "port"), .literal("/"), .context(name: "nclav_enclave_id"),
            ])
        #expect(template.references.map(\.offset) == [11, 29, 41])
    }

    @Test("`{{{{` is a literal `{{` and closing braces alone are literal")
    func escapes() throws {
        let template = try Template(parsing: "{{{{ not a token }} and {{ nclav_region }}")
        #expect(template.segments == [.literal("{{ not a token }} and "), .context(name: "nclav_region")])
        let rendered = template.render { segment in
            if case .context(let name) = segment { return "<\(name)>" }
            return ""
        }
        #expect(rendered == "{{ not a token }} and <nclav_region>")
    }

    @Test("a value without braces is one literal")
    func plainText() throws {
        #expect(try Template(parsing: "5432").segments == [.literal("5432")])
        #expect(try Template(parsing: "").segments.isEmpty)
    }

    @Test("malformed placeholders report the offset of their `{{`")
    func errors() {
        #expect(throws: Template.ParseError.self) { try Template(parsing: "x{{ nclav_region") }
        do {
            _ = try Template(parsing: "ab{{ a.b.c }}")
            Issue.record("expected a parse error")
        } catch {
            #expect(error.offset == 2)
            #expect(error.message.contains("a.b.c"))
        }
        do {
            _ = try Template(parsing: "{{  }}")
            Issue.record("expected a parse error")
        } catch {
            #expect(error.message.hasPrefix("empty placeholder"))
        }
    }
}
