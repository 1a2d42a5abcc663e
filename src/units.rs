//! Units as pgx prints them: milliseconds, bytes, counts. Ground floor: imports nothing
//! of pgx, so every module may print a number the same way.

/// A duration in milliseconds with the precision that matters at its size: `1.23 s`,
/// `123 ms`, `12.3 ms`, `1.234 ms`.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// Bytes in binary units: `1.50 GiB`, `12.0 MiB`, `384 KiB`, `12 B`.
pub fn fmt_bytes(bytes: i64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// 1234567 -> "1,234,567"
pub fn fmt_count(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_with_the_precision_their_size_needs() {
        assert_eq!(fmt_ms(1234.0), "1.23 s");
        assert_eq!(fmt_ms(123.4), "123 ms");
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(0.0123), "0.012 ms");
        assert_eq!(fmt_bytes(3 << 29), "1.50 GiB");
        assert_eq!(fmt_bytes(393_216), "384 KiB");
        assert_eq!(fmt_bytes(12), "12 B");
        assert_eq!(fmt_count(-1_234_567), "-1,234,567");
        assert_eq!(fmt_count(999), "999");
    }
}
