//! Wall-clock throughput of the in-process simulation: a uniperf client and server, each with
//! its own smoltcp interface, moving a fixed byte count over the simulated link. This is the
//! cost per byte of our stack and roles with no kernel in the way.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uniperf::cli::parse_options;
use uniperf::sim::simulate;

const BYTES: u64 = 256 * 1024 * 1024;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BYTES));
    for (name, extra) in [("forward_P1", ""), ("reverse_P1", "-R"), ("forward_P4", "-P 4")] {
        let mut args: Vec<String> =
            ["-c", "198.18.0.1", "-n", "256M", "-J", "--rate", "100G"].iter().map(|s| s.to_string()).collect();
        args.extend(extra.split_whitespace().map(String::from));
        let o = parse_options(&args, netstack::options::Target::Sim).expect("bench options parse");
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = simulate(&o).expect("simulation runs");
                assert!(r.outcome.is_ok(), "{:?}", r.outcome);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
