//! Measures the validator's memory, start-up and throughput on the referral Bundles of `fixtures/valid/`,
//! validated as rex's intake does (the Bundle against `rex-referral-bundle`, the ServiceRequest and the
//! Patient entries against their rex profiles).
//!
//! `cargo run -p rex-validation --release --example measure [-- SECONDS]` (from the repository root or the
//! crate folder). Prints RSS (`/proc/self/status`) and live heap bytes (counted by the global allocator
//! below) after each loading step, then single-thread resources/s.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use rex_validation::{Definitions, Validator};
use serde_json::Value;

/// The system allocator, counting live bytes so that each loading step's heap can be reported. Counting
/// stops before the timed run (its atomic operations would slow every allocation).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(true);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// CPU seconds used by this thread (`/proc/thread-self/stat`, user + system, in clock ticks of 10 ms):
/// steadier than wall time on a shared machine.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).into_iter().flatten().filter_map(|f| f.parse::<f64>().ok()).sum();
    ticks / 100.0
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn report(step: &str, started: Instant) {
    println!(
        "{step:<28} {:>8.1} ms  RSS {:>6.1} MB  heap live {:>6.1} MB  heap peak {:>6.1} MB",
        started.elapsed().as_secs_f64() * 1000.0,
        rss_mb(),
        LIVE.load(Ordering::Relaxed) as f64 / 1048576.0,
        PEAK.load(Ordering::Relaxed) as f64 / 1048576.0,
    );
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn profile(name: &str) -> String {
    format!("https://rex.example/fhir/StructureDefinition/{name}")
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let root = repo_root();
    report("process start", Instant::now());
    let started = Instant::now();
    let mut defs = Definitions::r4_core().expect("core package");
    report("core package loaded", started);
    defs.add_folder(&root.join("profiles")).expect("profiles");
    report("profiles/ added", started);
    let validator = Validator::new(defs);
    report("validator ready", started);

    let mut names: Vec<_> = std::fs::read_dir(root.join("fixtures/valid"))
        .expect("fixtures/valid")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let bundles: Vec<Value> =
        names.iter().map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")).collect();
    let (bundle_profile, sr_profile, patient_profile) =
        (profile("rex-referral-bundle"), profile("rex-referral-servicerequest"), profile("rex-international-patient"));
    let validate = |bundle: &Value| -> usize {
        let mut errors = validator.validate(bundle, &[&bundle_profile]).iter().filter(|i| i.is_error()).count();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            let profile = match resource["resourceType"].as_str() {
                Some("ServiceRequest") => &sr_profile,
                Some("Patient") => &patient_profile,
                _ => continue,
            };
            errors += validator.validate(resource, &[profile]).iter().filter(|i| i.is_error()).count();
        }
        errors
    };
    let errors: usize = bundles.iter().map(validate).sum();
    report("first round validated", started);
    println!("{} Bundles, {errors} errors in the first round", bundles.len());

    report("heap counting stops", started);
    COUNTING.store(false, Ordering::Relaxed);
    let (t, cpu) = (Instant::now(), thread_cpu_seconds());
    let (mut n_bundles, mut n_resources) = (0usize, 0usize);
    while t.elapsed().as_secs_f64() < seconds {
        for bundle in &bundles {
            std::hint::black_box(validate(bundle));
            n_bundles += 1;
            n_resources += bundle["entry"].as_array().map_or(0, Vec::len);
        }
    }
    let (secs, cpu) = (t.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu);
    println!("RSS after the timed run: {:.1} MB", rss_mb());
    println!(
        "throughput, one thread: {:.1} Bundles/s, {:.0} resources/s ({n_bundles} Bundles in {secs:.2} s); \
         per CPU second: {:.0} resources/s ({cpu:.2} s of CPU)",
        n_bundles as f64 / secs,
        n_resources as f64 / secs,
        n_resources as f64 / cpu,
    );
}
