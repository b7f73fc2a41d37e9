//! The ceiling workload against the real broker and Redis: every order
//! comes through all four hops in step, and its CPU per order is measured,
//! bare and with the runtime's records.

use orderflow_bench::ceiling::Load;
use orderflow_bench::{BenchConfig, run_ceiling};

#[tokio::test]
async fn the_ceiling_completes_every_order_and_measures_its_cpu() {
    let config = BenchConfig {
        amqp_url: orderflow_settings::DEFAULT_AMQP_URL.into(),
        redis_url: std::env::var("ORDERFLOW_TEST_REDIS_URL")
            .unwrap_or_else(|_| orderflow_settings::DEFAULT_REDIS_URL.into()),
        orders: 200,
        prefetch: 64,
        concurrency: 32,
        ceiling: true,
        worker_exe: env!("CARGO_BIN_EXE_runtime-bench").into(),
    };
    // `run_ceiling` fails unless every order completed with its state moved
    // on at every hop (with records: by the store's compare-and-set, from
    // the state the hop expects).
    for (load, name) in [
        (Load::Hops, "ceiling"),
        (Load::WithRecords, "ceiling+records"),
    ] {
        let figures = run_ceiling(&config, load).await.expect("the ceiling runs");
        assert_eq!(figures.name, name);
        assert_eq!(figures.orders, 200);
        assert!(figures.orders_per_second > 0.0, "{figures:?}");
        let cpu = figures.cpu_per_1000;
        assert!(cpu.total() > 0.0, "{name}: {cpu:?}");
    }
}
