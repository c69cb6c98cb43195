//! Clocks, /proc readings and number formatting.

use std::time::{Duration, Instant};

/// A value of /proc/self/status in kB (e.g. `VmHWM:`, `VmRSS:`).
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) this process has used, over all its threads.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command name, utime and stime are the 12th and 13th fields (clock ticks).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

/// Wall-clock and CPU time of a phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub wall: Duration,
    pub cpu: f64,
}

impl Timing {
    pub fn secs(&self) -> f64 {
        self.wall.as_secs_f64()
    }

    /// CPU time as a share of one core over the wall time.
    pub fn cores(&self) -> f64 {
        self.cpu / self.secs().max(1e-9)
    }

    pub fn add(&mut self, other: Timing) {
        self.wall += other.wall;
        self.cpu += other.cpu;
    }
}

pub struct Stopwatch {
    start: Instant,
    cpu: f64,
}

impl Stopwatch {
    pub fn start() -> Self {
        Self {
            cpu: cpu_seconds(),
            start: Instant::now(),
        }
    }

    pub fn stop(&self) -> Timing {
        Timing {
            wall: self.start.elapsed(),
            cpu: cpu_seconds() - self.cpu,
        }
    }
}

/// Thousands separated by commas.
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn mb_from_kb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

/// Prints a Markdown table with right-aligned columns after the first.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| match i {
                0 => format!("{c:<w$}"),
                _ => format!("{c:>w$}"),
            })
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    let rules: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| match i {
            0 => "-".repeat(*w),
            _ => format!("{}:", "-".repeat(w - 1)),
        })
        .collect();
    println!("| {} |", rules.join(" | "));
    for row in rows {
        line(row.clone());
    }
}

/// The system allocator, counting the bytes Rust code holds: the live heap now and its peak.
/// usearch allocates from C++ and is not counted, so a memory child's RSS minus this heap is
/// usearch's graph and vectors plus what the allocator keeps after frees.
pub struct CountingAlloc {
    live: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl CountingAlloc {
    pub const fn new() -> Self {
        Self {
            live: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Bytes allocated and not freed.
    pub fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most bytes live at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn grew(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.live.fetch_add(bytes, Relaxed) + bytes;
        self.peak.fetch_max(now, Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        self.live
            .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

// SAFETY: every call goes to the system allocator unchanged; only the counters are added.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.shrank(layout.size());
            self.grew(new_size);
        }
        p
    }
}
