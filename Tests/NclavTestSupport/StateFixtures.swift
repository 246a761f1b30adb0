import Foundation

/// Terraform state documents for tests: the same shape terraform writes (version 4, a serial,
/// a lineage, outputs, resources), with optional padding to make a body large.
public enum StateFixtures {
    /// `outputs` is the JSON of the `outputs` member; `padding` adds a `"padding"` member of
    /// that text (after the serial, so two bodies of the same serial and padding are equal).
    public static func body(serial: Int64, lineage: String = "lineage-a", outputs: String = "{}", padding: String? = nil) -> Data {
        let extra = padding.map { #","padding":"\#($0)""# } ?? ""
        return Data(
            #"{"version":4,"terraform_version":"1.11.4","serial":\#(serial),"lineage":"\#(lineage)","outputs":\#(outputs),"resources":[]\#(extra)}"#
                .utf8)
    }
}
