//! Byte sizes as people write them: `--max-memory 8GiB` parsed, and sizes printed in plans and
//! in the errors of a full disk.

/// `512MiB`, `8GiB`, `2.5G`, `1000000` (bytes).
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| anyhow::anyhow!("--max-memory {text}: expected a size like 8GiB or 512MiB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => anyhow::bail!("--max-memory {text}: unknown unit `{unit}`"),
    };
    let bytes = value * scale as f64;
    if bytes.is_nan() || bytes < 1.0 {
        anyhow::bail!("--max-memory {text}: must be positive");
    }
    Ok(bytes as u64)
}

/// `bytes` in the largest binary unit (up to TiB) that keeps the number at least 1, e.g. `1.5 GiB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
