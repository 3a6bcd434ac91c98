//! /proc/loadavg with the kernel's fixed-point averages
//! (kernel/sched/loadavg.c, include/linux/sched/loadavg.h).

pub const FSHIFT: u32 = 11;
pub const FIXED_1: u64 = 1 << FSHIFT;
pub const EXP_1: u64 = 1884;
pub const EXP_5: u64 = 2014;
pub const EXP_15: u64 = 2037;
pub const EXPS: [u64; 3] = [EXP_1, EXP_5, EXP_15];

/// One step of `calc_load`: `active` is in fixed point (tasks << FSHIFT).
pub fn calc_load(load: u64, exp: u64, active: u64) -> u64 {
    let mut newload = load * exp + active * (FIXED_1 - exp);
    if active >= load {
        newload += FIXED_1 - 1;
    }
    newload / FIXED_1
}

/// Advances the three averages by one 5 s sample of `n_active` tasks.
pub fn step(avg: &mut [u64; 3], n_active: u64) {
    let active = n_active * FIXED_1;
    for (a, exp) in avg.iter_mut().zip(EXPS) {
        *a = calc_load(*a, exp, active);
    }
}

fn fmt_fixed(x: u64) -> String {
    // fs/proc/loadavg.c adds FIXED_1/200 so the two decimals round.
    let x = x + FIXED_1 / 200;
    format!(
        "{}.{:02}",
        x >> FSHIFT,
        ((x & (FIXED_1 - 1)) * 100) >> FSHIFT
    )
}

pub fn render(avg: [u64; 3], running: usize, total: usize, last_pid: &str) -> String {
    format!(
        "{} {} {} {}/{} {}\n",
        fmt_fixed(avg[0]),
        fmt_fixed(avg[1]),
        fmt_fixed(avg[2]),
        running,
        total,
        last_pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_formula() {
        // Rule: calc_load from kernel/sched/loadavg.c. One sample of 2 tasks
        // from 0: 0*1884 + 4096*(2048-1884) + 2047 = 673791, /2048 = 328 (673791 < 329*2048).
        let mut a = [0; 3];
        step(&mut a, 2);
        assert_eq!(a[0], 328);
        // 328 + 10 = 338 -> 0.16 (338*100>>11 = 16).
        assert!(render(a, 2, 5, "77").starts_with("0.16 "));
        assert_eq!(render([0; 3], 0, 1, "9"), "0.00 0.00 0.00 0/1 9\n");
        // A constant load converges to it.
        let mut b = [0; 3];
        for _ in 0..2000 {
            step(&mut b, 3);
        }
        assert!(render(b, 3, 3, "1").starts_with("3.00 3.00 3.00"));
    }
}
