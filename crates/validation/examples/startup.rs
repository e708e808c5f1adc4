//! Measures start-up: time to build a ready Validator from the embedded core package, then with the embedded
//! IPS package too (as `rex` does).
//!
//! `cargo run -p rex-validation --release --example startup`
fn main() {
    for with_ips in [false, true] {
        let t = std::time::Instant::now();
        let mut defs = rex_validation::Definitions::r4_core().expect("core");
        if with_ips {
            defs.add_ips().expect("IPS");
        }
        let t1 = t.elapsed();
        let v = rex_validation::Validator::new(defs);
        let t2 = t.elapsed();
        let what = if with_ips { "core + IPS" } else { "core" };
        println!("{what}: definitions loaded in {t1:?}, validator ready in {t2:?}");
        for m in v.load_messages().iter().take(20) {
            println!("  load: {m}");
        }
        println!("{} load messages", v.load_messages().len());
    }
}
