//! `hookwire sign` and `hookwire verify` driven as a black box, exactly as `cli.md` specifies:
//! output lines, exit codes (0 ok, 1 invalid, 2 bad arguments) and reasons.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hookwire");
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_with_secret_env(args, stdin, None)
}

/// Runs the binary with `HOOKWIRE_SECRET` set to `secret`, or unset (so a secret in the test
/// runner's own environment never leaks into a case).
fn run_with_secret_env(args: &[&str], stdin: &[u8], secret: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    match secret {
        Some(s) => cmd.env("HOOKWIRE_SECRET", s),
        None => cmd.env_remove("HOOKWIRE_SECRET"),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        // A command that rejects its arguments exits without reading stdin; the write then
        // races the exit and may hit a closed pipe, which is not a failure of the command.
        if let Err(e) = i.write_all(stdin)
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            panic!("stdin: {e}");
        }
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Signs `body`, then returns `-H` arguments for every printed header.
fn sign(args: &[&str], body: &[u8]) -> Vec<String> {
    let o = run(&[&["sign"], args].concat(), body);
    assert_eq!(
        o.status.code(),
        Some(0),
        "sign failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o).lines().map(str::to_owned).collect()
}

fn verify(secrets: &[&str], extra: &[&str], headers: &[String], body: &[u8]) -> (i32, String) {
    let mut args = vec!["verify".to_owned()];
    for s in secrets {
        args.extend(["--secret".to_owned(), (*s).to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    for h in headers {
        args.extend(["-H".to_owned(), h.clone()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&refs, body);
    (
        o.status.code().unwrap_or(-1),
        stdout(&o).trim_end().to_owned(),
    )
}

#[test]
fn sign_prints_exactly_the_headers_of_a_known_answer() {
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"secret",b"1700000000.{}",hashlib.sha256).hexdigest())'
    let lines = sign(&["--secret", "secret", "--timestamp", "1700000000"], b"{}");
    assert_eq!(
        lines,
        [
            "X-Webhook-Signature: sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163",
            "X-Webhook-Timestamp: 1700000000",
        ]
    );
}

#[test]
fn every_scheme_round_trips_through_the_binary() {
    for (scheme, secret) in [
        ("hookwire", "s3cr3t"),
        ("standard", WHSEC),
        ("github", "s3cr3t"),
        ("stripe", "whsec_stripe"),
        ("slack", "s3cr3t"),
        ("body", "s3cr3t"),
    ] {
        let body = br#"{"type":"order.created"}"#;
        let headers = sign(
            &[
                "--secret",
                secret,
                "--scheme",
                scheme,
                "--timestamp",
                "1700000000",
                "--id",
                "evt_1",
            ],
            body,
        );
        // `auto` reads `X-Webhook-Signature` as the hookwire scheme (timestamped); the
        // body-only scheme shares that header, so it is verified by name.
        let auto: &[&str] = if scheme == "body" {
            &["--now", "1700000000", "--scheme", "body"]
        } else {
            &["--now", "1700000000"]
        };
        let (code, out) = verify(&[secret], auto, &headers, body);
        assert_eq!(
            (code, out.as_str()),
            (0, format!("ok {scheme}").as_str()),
            "{scheme}: {headers:?}"
        );
        let (code, out) = verify(
            &[secret],
            &["--now", "1700000000", "--scheme", scheme],
            &headers,
            b"tampered",
        );
        assert_eq!(
            (code, out.as_str()),
            (1, "invalid: bad-signature"),
            "{scheme}"
        );
    }
}

#[test]
fn body_can_come_from_a_file() {
    let dir = hookwire_testkit::temp_dir("cli-file");
    let path = dir.join("body.json");
    std::fs::write(&path, b"{\"a\":1}").unwrap_or_else(|e| panic!("write: {e}"));
    let file = path.to_string_lossy().into_owned();
    let headers = sign(
        &[
            "--secret",
            "k",
            "--timestamp",
            "1700000000",
            "--file",
            &file,
        ],
        b"",
    );
    let (code, out) = verify(
        &["k"],
        &["--now", "1700000000", "--file", &file],
        &headers,
        b"",
    );
    assert_eq!((code, out.as_str()), (0, "ok hookwire"));
}

#[test]
fn key_rotation_accepts_any_listed_secret() {
    let headers = sign(&["--secret", "old", "--timestamp", "1700000000"], b"x");
    let (code, out) = verify(&["new", "old"], &["--now", "1700000000"], &headers, b"x");
    assert_eq!((code, out.as_str()), (0, "ok hookwire"));
    let (code, out) = verify(&["new"], &["--now", "1700000000"], &headers, b"x");
    assert_eq!((code, out.as_str()), (1, "invalid: bad-signature"));
}

#[test]
fn every_reason_is_printed_with_exit_1() {
    let body = b"{}";
    let std_headers = sign(
        &[
            "--secret",
            WHSEC,
            "--scheme",
            "standard",
            "--timestamp",
            "1700000000",
            "--id",
            "m1",
        ],
        body,
    );
    let without = |name: &str| -> Vec<String> {
        std_headers
            .iter()
            .filter(|h| !h.to_lowercase().starts_with(name))
            .cloned()
            .collect()
    };
    let std_opts = ["--scheme", "standard", "--now", "1700000000"];
    let cases: Vec<(Vec<String>, Vec<&str>, &str)> = vec![
        (vec![], vec!["--now", "1700000000"], "missing-signature"),
        (
            without("webhook-timestamp"),
            std_opts.to_vec(),
            "missing-timestamp",
        ),
        (without("webhook-id"), std_opts.to_vec(), "missing-id"),
        (
            std_headers.clone(),
            vec!["--scheme", "standard", "--now", "1700000301"],
            "stale",
        ),
        (
            std_headers.clone(),
            vec!["--scheme", "standard", "--now", "1699999699"],
            "future",
        ),
        (
            [
                without("webhook-signature"),
                vec!["webhook-signature: v1,AAAA".to_owned(); 2],
            ]
            .concat(),
            std_opts.to_vec(),
            "malformed-header",
        ),
    ];
    for (headers, opts, reason) in cases {
        let (code, out) = verify(&[WHSEC], &opts, &headers, body);
        assert_eq!(
            (code, out),
            (1, format!("invalid: {reason}")),
            "{headers:?}"
        );
    }
    let (code, out) = verify(&["wrong"], &std_opts, &std_headers, body);
    assert_eq!((code, out.as_str()), (1, "invalid: bad-signature"));
}

#[test]
fn tolerance_flag_widens_the_window() {
    let headers = sign(&["--secret", "k", "--timestamp", "1700000000"], b"x");
    let late = ["--now", "1700000400"];
    assert_eq!(verify(&["k"], &late, &headers, b"x").1, "invalid: stale");
    let (code, _) = verify(
        &["k"],
        &[&late[..], &["--tolerance", "600"]].concat(),
        &headers,
        b"x",
    );
    assert_eq!(code, 0);
}

#[test]
fn bad_arguments_exit_2_with_a_reason_on_stderr() {
    let o = run(
        &["sign", "--secret", "not-whsec", "--scheme", "standard"],
        b"{}",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("standard"),
        "{o:?}"
    );
    let o = run(&["verify", "--secret", "k", "-H", "no colon here"], b"{}");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = run(&["sign", "--secret", "k", "--scheme", "nope"], b"{}");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = run(&["frobnicate"], b"");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn sign_without_id_makes_a_fresh_unique_one() {
    let a = sign(&["--secret", WHSEC, "--scheme", "standard"], b"{}");
    let b = sign(&["--secret", WHSEC, "--scheme", "standard"], b"{}");
    let id = |h: &[String]| {
        h.iter()
            .find(|l| l.to_lowercase().starts_with("webhook-id:"))
            .cloned()
    };
    assert!(id(&a).is_some(), "{a:?}");
    assert_ne!(id(&a), id(&b));
}

#[test]
fn the_secret_can_come_from_the_environment_instead_of_the_command_line() {
    let body = br#"{"a":1}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let opts = [
        "--scheme",
        "standard",
        "--id",
        "msg_1",
        "--timestamp",
        ts.as_str(),
    ];
    let by_flag = sign(&[&["--secret", WHSEC][..], &opts[..]].concat(), body);
    let o = run_with_secret_env(&[&["sign"][..], &opts[..]].concat(), body, Some(WHSEC));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let by_env: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(by_env, by_flag);

    let mut args = vec!["verify", "--scheme", "standard"];
    for h in &by_flag {
        args.extend(["-H", h.as_str()]);
    }
    let code = |secret| run_with_secret_env(&args, body, Some(secret)).status.code();
    assert_eq!(code(WHSEC), Some(0));
    assert_eq!(code("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Some(1));
    // Neither flag nor environment: a usage error, as before.
    assert_eq!(run(&args, body).status.code(), Some(2));
    // `--help` never prints the value.
    let o = run_with_secret_env(&["sign", "--help"], b"", Some("not-for-your-eyes"));
    assert!(stdout(&o).contains("HOOKWIRE_SECRET"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("not-for-your-eyes"), "{}", stdout(&o));
}
