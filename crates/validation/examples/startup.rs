//! Measures start-up: time to build a ready Validator from the embedded core package.
//!
//! `cargo run -p rex-validation --release --example startup`
fn main() {
    let t = std::time::Instant::now();
    let defs = rex_validation::Definitions::r4_core().expect("core");
    let t1 = t.elapsed();
    let v = rex_validation::Validator::new(defs);
    let t2 = t.elapsed();
    println!("definitions loaded in {t1:?}, validator ready in {t2:?}");
    for m in v.load_messages().iter().take(20) {
        println!("  load: {m}");
    }
    println!("{} load messages", v.load_messages().len());
}
