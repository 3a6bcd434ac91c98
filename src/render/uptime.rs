//! /proc/uptime: "uptime idle" in seconds with two decimals
//! (fs/proc/uptime.c).

const NS: u64 = 1_000_000_000;

pub fn render(uptime_ns: u64, idle_ns: u64) -> String {
    format!(
        "{}.{:02} {}.{:02}\n",
        uptime_ns / NS,
        uptime_ns % NS / (NS / 100),
        idle_ns / NS,
        idle_ns % NS / (NS / 100)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_decimals_truncated() {
        assert_eq!(super::render(12_345_678_901, 999_999_999), "12.34 0.99\n");
    }
}
