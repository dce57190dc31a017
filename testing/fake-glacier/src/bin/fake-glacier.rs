//! Runs the fake Glacier service for benchmarks and drills:
//! `fake-glacier VAULT [--keep-data] [--unsigned] [--latency-ms N]`. Prints the endpoint on the
//! first line; on end of standard input, prints the time its handlers spent
//! (`busy_seconds=...`), the job output bytes sent and the retrievals asked (bytes of ranged
//! ones, count of whole ones), and exits. `--latency-ms` delays every answer (a home uplink's round
//! trip to AWS).
//! Requests must be signed with the test credentials (`testing`/`testing`) unless `--unsigned`
//! (for scripts that inspect the fake with plain HTTP).

use std::io::BufRead;

fn main() {
    let mut args = std::env::args().skip(1);
    let vault = args.next().unwrap_or_else(|| "bench".into());
    let flags: Vec<String> = args.collect();
    let keep_data = flags.iter().any(|a| a == "--keep-data");
    let check_signatures = !flags.iter().any(|a| a == "--unsigned");
    // Each request waits this long: the round trip to AWS from a home uplink.
    let latency_ms: u64 = flags
        .iter()
        .position(|a| a == "--latency-ms")
        .and_then(|i| flags.get(i + 1))
        .map(|n| {
            n.parse()
                .expect("--latency-ms takes a number of milliseconds")
        })
        .unwrap_or(0);
    let fake = fake_glacier::FakeGlacier::start();
    fake.create_vault(&vault);
    fake.set(|b| {
        b.keep_data = keep_data;
        b.check_signatures = check_signatures;
        b.latency = std::time::Duration::from_millis(latency_ms);
    });
    println!("{}", fake.endpoint);
    for _ in std::io::stdin().lock().lines() {}
    let stats = fake.stats();
    let ranged: u64 = stats
        .retrieval_ranges
        .iter()
        .flatten()
        .map(|(start, end)| end - start)
        .sum();
    let whole = stats
        .retrieval_ranges
        .iter()
        .filter(|r| r.is_none())
        .count();
    println!(
        "busy_seconds={:.3} requests={} parts={} output_bytes={} ranged_retrieval_bytes={ranged} \
         whole_retrievals={whole}",
        stats.busy.as_secs_f64(),
        stats.requests,
        stats.parts_stored.len(),
        stats.output_bytes,
    );
}
