//! The report generator on sample JSON: tables, targets, charts, the marked section, quick runs.

use super::*;

fn sample(suite: &str, quick: bool, figures: &str, ratios: &str, extra: &str) -> String {
    format!(
        r#"{{"suite":"{suite}","quick":{quick},"rounds":5,"nproc":2,"peers":{{"node":"v20.20.2"}},
        "figures":{{{figures}}},"medians":{{}},"ratios":{{{ratios}}},"extra":{{{extra}}},
        "notes":["a note of the run"]}}"#
    )
}

fn sse_json(quick: bool) -> String {
    sample(
        "sse",
        quick,
        r#""lean_1k_deliveries_per_s":[900000,1000000,1100000],"lean_10k_deliveries_per_s":[800000],
        "raw_1k_deliveries_per_s":[1000000],"raw_10k_deliveries_per_s":[900000],
        "node_1k_deliveries_per_s":[200000],"node_10k_deliveries_per_s":[150000],
        "lean_1k_p99_ms":[4.0],"lean_10k_p99_ms":[30.0],"raw_1k_p99_ms":[3.0],"raw_10k_p99_ms":[25.0],
        "node_1k_p99_ms":[9.0],"node_10k_p99_ms":[90.0]"#,
        r#""fanout_vs_limit":0.89,"p99_vs_limit_10k":1.5,"fanout_vs_node":5.3,"made_up_ratio":2.0"#,
        r#""subscribers":[1000,10000],"cpu":"Test CPU","kernel":"6.1.0","layout":"pinned""#,
    )
}

/// A fresh directory under the system temp dir.
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

const HAND: &str = "# Benchmarks\n\nHand-written rules.\n";

#[test]
fn a_suite_block_has_ratios_targets_figures_machine_date_and_command() {
    let run = Run::parse(&sse_json(false), "2026-12-07 03:00".into()).expect("parses");
    assert!(!run.quick);
    let b = suite_block(&run, Some("bench/sse.svg"));
    assert!(b.starts_with("<!-- suite:sse -->\n"), "{b}");
    assert!(b.contains("Command: `cargo xtask bench sse`"), "{b}");
    assert!(b.contains("date (UTC): 2026-12-07 03:00"), "{b}");
    assert!(b.contains("nproc 2, Test CPU, 6.1.0"), "{b}");
    assert!(
        b.contains("| `fanout_vs_limit` | 0.890 | ≥ 0.8 | yes |"),
        "{b}"
    );
    assert!(
        b.contains("| `p99_vs_limit_10k` | 1.50 | ≤ 1.3 | **no** |"),
        "{b}"
    );
    assert!(b.contains("| `made_up_ratio` | 2.00 | — |  |"), "{b}");
    // The median of the three rounds, with the round count.
    assert!(
        b.contains("| `lean_1k_deliveries_per_s` | 1\u{202f}000\u{202f}000 | 3 |"),
        "{b}"
    );
    assert!(b.contains("![sse chart](bench/sse.svg)"), "{b}");
    assert!(b.contains("- a note of the run"), "{b}");
    // A pinned suite sees one CPU: the machine's count comes from `machine.cpus`.
    let pinned = sse_json(false).replacen(
        r#""nproc":2,"#,
        r#""nproc":1,"machine":{"cpus":2,"cpu":"Pinned CPU","kernel":"6.2"},"#,
        1,
    );
    let b = suite_block(&Run::parse(&pinned, String::new()).expect("parses"), None);
    assert!(b.contains("2 CPUs (nproc 1), Pinned CPU, 6.2"), "{b}");
}

#[test]
fn the_sse_chart_plots_throughput_and_p99_against_n_for_each_server() {
    let run = Run::parse(&sse_json(false), String::new()).expect("parses");
    let svg = chart::render(&run).expect("renders");
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    for text in [
        "burst fan-out throughput",
        "p99",
        "hookwire (lean)",
        "limit",
        "Node node:http",
    ] {
        assert!(svg.contains(text), "missing {text}");
    }
}

#[test]
fn sign_jobs_ws_and_unknown_suites_get_a_chart() {
    let sign = sample(
        "sign",
        false,
        r#""raw_hmac_ns_1k":[1000],"raw_hmac_ns_64k":[40000],"hookwire_verify_ns_1k":[1100],
        "hookwire_verify_ns_64k":[41000],"svix_verify_ns_1k":[2000],"svix_verify_ns_64k":[90000]"#,
        r#""verify_vs_raw_1k":1.1"#,
        "",
    );
    let jobs = sample(
        "jobs",
        false,
        r#""hookwire_jobs_per_s":[40000],"bullmq_jobs_per_s":[10000],
        "hookwire_redis_cpu_us_per_job":[5],"bullmq_redis_cpu_us_per_job":[30]"#,
        r#""jobs_vs_bullmq":4.0"#,
        "",
    );
    let ws = sample(
        "ws",
        false,
        r#""hookwire_2k_deliveries_per_s":[900000],"node_2k_deliveries_per_s":[200000],
        "hookwire_10k_p99_ms":[20],"node_10k_p99_ms":[60]"#,
        r#""fanout_vs_node_ws":4.5"#,
        r#""fanout_clients":[2000,10000]"#,
    );
    let future = sample("future", false, r#""x":[1]"#, r#""x_vs_y":0.7"#, "");
    let cases = [
        (
            sign,
            vec![
                "time per call against body size",
                "hookwire verify",
                "svix verify",
            ],
        ),
        (jobs, vec!["jobs per s", "redis cpu us per job", "bullmq"]),
        (ws, vec!["burst fan-out throughput", "Node ws"]),
        (future, vec!["ratios", "x_vs_y"]),
    ];
    for (json, texts) in cases {
        let run = Run::parse(&json, String::new()).expect("parses");
        let svg = chart::render(&run).expect("renders");
        for t in texts {
            assert!(svg.contains(t), "{}: missing {t}", run.suite);
        }
    }
}

#[test]
fn the_generic_chart_shows_ratios_against_their_targets() {
    let json = sample(
        "bus",
        false,
        "",
        r#""bus_vs_reference":6.0,"p99_ms_10k":4.0"#,
        "",
    );
    let run = Run::parse(&json, String::new()).expect("parses");
    let svg = chart::render(&run).expect("renders");
    assert!(svg.contains("ratios against their targets"));
    assert!(svg.contains("bus_vs_reference") && svg.contains("p99_ms_10k"));
    assert_eq!(Goal::AtLeast(5.0).headroom(6.0), 1.2);
    assert_eq!(Goal::AtMost(2.0).headroom(4.0), 0.5);
}

#[test]
fn splice_rewrites_only_the_marked_section_and_keeps_other_suites_blocks() {
    let old_ws = "<!-- suite:ws -->\nold ws block\n<!-- /suite:ws -->\n";
    let old_sse = "<!-- suite:sse -->\nold sse block\n<!-- /suite:sse -->\n";
    let doc = format!("{HAND}\n{BEGIN}\n\n{old_sse}\n{old_ws}\n{END}\n\nTrailing hand text.\n");
    let mut new = BTreeMap::new();
    new.insert(
        "sse".to_owned(),
        "<!-- suite:sse -->\nnew sse block\n<!-- /suite:sse -->\n".to_owned(),
    );
    let out = splice(&doc, &new, &["sign", "sse", "ws"]).expect("splices");
    assert!(out.starts_with(HAND.trim_end()), "{out}");
    assert!(
        out.contains("new sse block") && !out.contains("old sse block"),
        "{out}"
    );
    assert!(out.contains("old ws block"), "{out}");
    assert!(
        out.find("new sse block") < out.find("old ws block"),
        "suite order"
    );
    assert!(out.ends_with("Trailing hand text.\n"), "{out}");
    // Idempotent: splicing the same blocks again changes nothing.
    assert_eq!(
        splice(&out, &new, &["sign", "sse", "ws"]).expect("again"),
        out
    );
}

#[test]
fn splice_appends_the_section_when_the_document_has_none_and_refuses_broken_markers() {
    let out = splice(HAND, &BTreeMap::new(), &[]).expect("splices");
    assert!(out.starts_with(HAND.trim_end()) && out.contains(BEGIN) && out.contains(END));
    let broken = format!("{HAND}{END}\n{BEGIN}\n");
    assert!(splice(&broken, &BTreeMap::new(), &[]).is_err());
}

#[test]
fn a_quick_run_is_never_published() {
    let dir = temp("quick");
    let (from, docs) = (dir.join("bench"), dir.join("docs"));
    std::fs::create_dir_all(&from).expect("dir");
    std::fs::create_dir_all(&docs).expect("dir");
    std::fs::write(docs.join("benchmarks.md"), HAND).expect("doc");
    // Even under the full-run name, a document that says quick (or does not say) is skipped.
    std::fs::write(from.join("sse.json"), sse_json(true)).expect("json");
    std::fs::write(from.join("ws.json"), r#"{"suite":"ws","ratios":{}}"#).expect("json");
    let e = generate(&from, &docs).expect_err("nothing to publish");
    assert!(e.contains("no full-run JSON"), "{e}");
    assert_eq!(
        std::fs::read_to_string(docs.join("benchmarks.md")).expect("doc"),
        HAND
    );
    assert!(!docs.join("bench/sse.svg").exists());

    // A full run beside the quick one is published, with its chart; the quick one is not.
    std::fs::write(from.join("sse.json"), sse_json(false)).expect("json");
    std::fs::write(
        from.join("sign.quick.json"),
        sample("sign", true, "", "", ""),
    )
    .expect("json");
    let log = generate(&from, &docs).expect("publishes");
    assert!(
        log.iter()
            .any(|l| l.contains("sign.quick.json") && l.contains("never published"))
    );
    let doc = std::fs::read_to_string(docs.join("benchmarks.md")).expect("doc");
    assert!(doc.contains("<!-- suite:sse -->") && !doc.contains("<!-- suite:sign -->"));
    assert!(doc.starts_with(HAND.trim_end()));
    assert!(docs.join("bench/sse.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn civil_dates_are_gregorian() {
    assert_eq!(civil(0), (1970, 1, 1));
    assert_eq!(civil(11_016), (2000, 2, 29));
    assert_eq!(civil(20_794), (2026, 12, 7));
}
