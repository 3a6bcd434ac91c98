//! /sys/devices/system/cpu/{online,possible,present}: "0-(n-1)".

pub fn cpu_range(n: usize) -> String {
    match n {
        0 | 1 => "0\n".to_owned(),
        n => format!("0-{}\n", n - 1),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges() {
        assert_eq!(super::cpu_range(1), "0\n");
        assert_eq!(super::cpu_range(4), "0-3\n");
    }
}
