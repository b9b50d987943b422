//! Verifies one SGX quote with its collateral again and again with `dcap_qvl::verify`
//! (no cache: every call parses and checks the chain, CRLs, TCB Info and QE Identity)
//! and prints one JSON line with the rate.
//!
//!     dcap-qvl-baseline QUOTE COLLATERAL_JSON NOW_UNIX SECONDS

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: dcap-qvl-baseline QUOTE COLLATERAL_JSON NOW_UNIX SECONDS");
        std::process::exit(2);
    }
    let quote = std::fs::read(&args[1]).expect("read the quote");
    let text = std::fs::read_to_string(&args[2]).expect("read the collateral");
    let collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_str(&text).expect("parse the collateral");
    let now: u64 = args[3].parse().expect("NOW_UNIX is an integer");
    let seconds: f64 = args[4].parse().expect("SECONDS is a number");

    let report = dcap_qvl::verify::verify(&quote, &collateral, now).expect("the quote verifies");
    let (mut calls, start) = (0u64, Instant::now());
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..16 {
            std::hint::black_box(
                dcap_qvl::verify::verify(&quote, &collateral, now).expect("the quote verifies"),
            );
        }
        calls += 16;
    }
    let rate = calls as f64 / start.elapsed().as_secs_f64();
    println!(
        "{{\"verifier\": \"dcap-qvl 0.7.1 (Rust, ring)\", \"tcb_status\": \"{}\", \"verifications_per_s\": {:.1}}}",
        report.status, rate
    );
}
