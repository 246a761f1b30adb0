import IacRunner
import Testing

@Suite("HCL string escaping")
struct HCLTests {
    @Test(
        "escapes what HCL would interpret",
        arguments: [
            ("plain", #""plain""#),
            (#"a "quoted" word"#, #""a \"quoted\" word""#),
            (#"C:\path\to"#, #""C:\\path\\to""#),
            ("two\nlines\r\tend", #""two\nlines\r\tend""#),
            ("${var.secret}", #""$${var.secret}""#),
            ("%{ if true }x%{ endif }", #""%%{ if true }x%%{ endif }""#),
            ("$ {not} % {either} {}", #""$ {not} % {either} {}""#),
            ("bell\u{07}", #""bell\u0007""#),
            ("ünïcödé ✓", #""ünïcödé ✓""#),
            ("", #""""#),
        ])
    func quoted(_ input: String, _ expected: String) {
        #expect(HCL.quoted(input) == expected)
    }
}
