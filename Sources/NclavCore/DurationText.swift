/// Durations as people type them on the command line: `90s`, `30m`, `6h`, `1d`, `1h30m`.
public enum DurationText {
    /// Nil unless the whole text is one or more `<number><s|m|h|d>` and at least one second.
    public static func parse(_ text: String) -> Duration? {
        var total: Int64 = 0
        var number = ""
        for character in text {
            if character.isASCII && character.isNumber {
                number.append(character)
                continue
            }
            guard let value = Int64(number) else { return nil }
            switch character {
            case "s": total += value
            case "m": total += value * 60
            case "h": total += value * 3600
            case "d": total += value * 86400
            default: return nil
            }
            number = ""
        }
        guard number.isEmpty, total >= 1 else { return nil }
        return .seconds(total)
    }
}
