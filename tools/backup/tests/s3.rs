//! `cairn-backup` with backups in S3-compatible object storage, against a real garage
//! server on 127.0.0.1 (see `cairn_tests::garage`) and real services: an upload made
//! beside a running service is listed, verifies, and restores into a new directory that
//! a service starts on with the same data; a service lists and restores what
//! `cairn-backup` uploaded, and `cairn-backup` restores what a service's backup job
//! uploaded; bad inputs (no credentials, a missing bucket, a missing backup, a wrong key,
//! a bad or dead endpoint, a directory in use) each fail in one line and change nothing.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use cairn_remote::AWS_VARIABLES;
use cairn_tests::cli::Endpoint;
use cairn_tests::garage::{Garage, REGION};
use cairn_tests::process::{write_settings, ServiceProcess};
use serde_json::Value;

/// The prefix the backups of these tests are kept under.
const PREFIX: &str = "cairn/db1";

/// Runs `cairn-backup ARGS` with the `AWS_*` variables `env` and no others.
fn tool_with(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn-backup"));
    for name in AWS_VARIABLES {
        command.env_remove(name);
    }
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running cairn-backup")
}

/// Runs `cairn-backup ARGS` with the key of `garage` in the environment.
fn tool(garage: &Garage, args: &[&str]) -> Output {
    tool_with(&garage.aws_env(), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout as JSON.
fn ok_json(output: Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        text(&output.stderr)
    );
    serde_json::from_str(text(&output.stdout).trim()).expect("JSON on stdout")
}

/// Asserts exit status 1 with one line on stderr that holds every one of `needles`.
fn fails(output: Output, needles: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
}

/// The bucket's objects under the test prefix.
fn objects(garage: &Garage) -> Vec<(String, u64)> {
    garage.objects(PREFIX).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn url(garage: &Garage, name: &str) -> String {
    format!("s3://{}/{PREFIX}/{name}", garage.bucket)
}

/// Starts a service on `dir` with the key of `garage` in its environment.
fn start(dir: &Path, garage: &Garage) -> ServiceProcess {
    let env = garage.aws_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::start_with_env(dir, &[], &env).unwrap()
}

#[test]
fn an_upload_restores_into_a_new_directory_a_service_starts_on() {
    let garage = Garage::start().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let tmp_arg = tmp.to_str().unwrap();
    let data = scratch.path().join("data");
    let service = ServiceProcess::start(&data, &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["db", "create", "other"]).ok();
    cli.run(&["put", "notes", "kept", "\"before\""]).ok();
    cli.run(&["put", "other", "k", "1"]).ok();

    // Live, beside the running service.
    let b1 = url(&garage, "b1");
    let data_arg = data.to_str().unwrap();
    let summary = ok_json(tool(
        &garage,
        &[data_arg, &b1, "-o", "json", "--tmp", tmp_arg],
    ));
    let archive_url = format!("{b1}.tar.zst");
    assert_eq!(summary["operation"], "backup");
    assert_eq!(summary["path"], archive_url.as_str());
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["databases"], 2);
    let stored = objects(&garage);
    let keys: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("{PREFIX}/b1.manifest.json"),
            format!("{PREFIX}/b1.tar.zst")
        ]
    );
    assert!(names(&tmp).is_empty(), "the local copy is gone");

    let location = format!("s3://{}/{PREFIX}", garage.bucket);
    let list = ok_json(tool(&garage, &["--list", &location, "-o", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "b1");
    assert_eq!(list[0]["location"], archive_url.as_str());
    assert_eq!(list[0]["databases"], 2);
    let listed = tool(&garage, &["--list", &location]);
    assert!(text(&listed.stdout).starts_with("b1  "), "{listed:?}");

    let report = ok_json(tool(
        &garage,
        &["--verify", &b1, "-o", "json", "--tmp", tmp_arg],
    ));
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["path"], b1.as_str());
    assert!(names(&tmp).is_empty(), "the download is gone");

    fails(
        tool(&garage, &[data_arg, &b1, "--tmp", tmp_arg]),
        &["already exists", "choose another name"],
    );
    assert_eq!(objects(&garage), stored, "the existing backup is untouched");

    cli.run(&["put", "notes", "kept", "\"after\""]).ok();
    let restored = scratch.path().join("restored");
    let summary = ok_json(tool(
        &garage,
        &[
            "--restore",
            &b1,
            restored.to_str().unwrap(),
            "-o",
            "json",
            "--tmp",
            tmp_arg,
        ],
    ));
    assert_eq!(summary["operation"], "restore");
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["replaced"], Value::Null);
    assert!(names(&tmp).is_empty(), "the download is gone");
    service.stop().unwrap();

    let copy = ServiceProcess::start(&restored, &[]).unwrap();
    let copied = Endpoint::unix(&copy);
    assert_eq!(copied.value("notes", "kept"), Value::from("before"));
    assert_eq!(copied.value("other", "k"), Value::from(1));
    copy.stop().unwrap();
}

#[test]
fn a_service_and_cairn_backup_restore_each_other_s_backups() {
    let garage = Garage::start().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_settings(
        &data,
        &format!(
            "[backup]\nurl = \"s3://{}/{PREFIX}\"\n[backup.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\n",
            garage.bucket, garage.endpoint
        ),
    );
    let service = start(&data, &garage);
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["put", "notes", "k", "\"v1\""]).ok();

    let data_arg = data.to_str().unwrap();
    ok_json(tool(
        &garage,
        &[data_arg, &url(&garage, "by-tool"), "-o", "json"],
    ));
    let list = cli.run(&["-o", "json", "backup", "list"]).ok().json();
    assert_eq!(list[0]["name"], "by-tool", "{list}");
    cli.run(&["put", "notes", "k", "\"v2\""]).ok();
    let restored = cli
        .run(&["-o", "json", "restore", "start", "by-tool", "--wait"])
        .ok()
        .json();
    assert_eq!(restored["status"], "COMPLETED", "{restored}");
    assert_eq!(cli.value("notes", "k"), Value::from("v1"));

    cli.run(&["put", "notes", "k", "\"v3\""]).ok();
    let done = cli
        .run(&[
            "-o",
            "json",
            "backup",
            "start",
            "--name",
            "by-service",
            "--wait",
        ])
        .ok()
        .json();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    cli.run(&["put", "notes", "k", "\"v4\""]).ok();
    service.stop().unwrap();

    let location = format!("s3://{}/{PREFIX}", garage.bucket);
    let list = ok_json(tool(&garage, &["--list", &location, "-o", "json"]));
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["by-service", "by-tool"], "newest first");

    // The archive's URL, as `backup start` and `backup list` show it, names the backup.
    let by_service = done["location"].as_str().unwrap();
    assert_eq!(
        by_service,
        format!("{}.tar.zst", url(&garage, "by-service"))
    );
    ok_json(tool(
        &garage,
        &[
            "--restore",
            by_service,
            data_arg,
            "--discard-replaced",
            "-o",
            "json",
        ],
    ));
    let service = start(&data, &garage);
    assert_eq!(
        Endpoint::unix(&service).value("notes", "k"),
        Value::from("v3")
    );
    service.stop().unwrap();
}

#[test]
fn bad_inputs_fail_in_one_line_and_change_nothing() {
    let garage = Garage::start().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let tmp_arg = tmp.to_str().unwrap();
    let data = scratch.path().join("data");
    let service = ServiceProcess::start(&data, &[]).unwrap();
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["put", "notes", "k", "1"]).ok();
    let data_arg = data.to_str().unwrap();
    let b1 = url(&garage, "b1");
    ok_json(tool(&garage, &[data_arg, &b1, "-o", "json"]));
    let stored = objects(&garage);
    let new_dir = scratch.path().join("new");
    let new_arg = new_dir.to_str().unwrap();
    let b2 = url(&garage, "b2");
    let no_bucket = format!("s3://no-such-bucket/{PREFIX}/b1");

    let without_key: Vec<(&str, String)> = garage
        .aws_env()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("AWS_SECRET"))
        .collect();
    let mut wrong_key = garage.aws_env();
    wrong_key.retain(|(name, _)| *name != "AWS_SECRET_ACCESS_KEY");
    wrong_key.push(("AWS_SECRET_ACCESS_KEY", "0".repeat(64)));
    let mut bad_endpoint = garage.aws_env();
    bad_endpoint.retain(|(name, _)| *name != "AWS_ENDPOINT_URL");
    bad_endpoint.push(("AWS_ENDPOINT_URL", "127.0.0.1:3900".to_string()));
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_endpoint = format!("http://127.0.0.1:{dead_port}");
    let held = format!("in use by pid {}", service.pid());

    let cases: Vec<(Output, Vec<&str>)> = vec![
        (
            tool_with(&without_key, &[data_arg, &b2, "--tmp", tmp_arg]),
            vec!["no credentials for", "AWS_SECRET_ACCESS_KEY"],
        ),
        (
            tool_with(&wrong_key, &[data_arg, &b2, "--tmp", tmp_arg]),
            vec![
                "the object store refused it (403",
                "signature",
                "AWS_SECRET_ACCESS_KEY",
            ],
        ),
        (
            tool_with(
                &bad_endpoint,
                &["--restore", &b1, new_arg, "--tmp", tmp_arg],
            ),
            vec!["AWS_ENDPOINT_URL: \"127.0.0.1:3900\" is not an endpoint URL"],
        ),
        (
            tool(
                &garage,
                &[
                    "--verify",
                    &b1,
                    "--s3-endpoint",
                    &dead_endpoint,
                    "--tmp",
                    tmp_arg,
                ],
            ),
            vec!["check the endpoint"],
        ),
        (
            tool(&garage, &[data_arg, &no_bucket, "--tmp", tmp_arg]),
            vec!["(404 NoSuchBucket)", "create the bucket"],
        ),
        (
            tool(
                &garage,
                &["--restore", &no_bucket, new_arg, "--tmp", tmp_arg],
            ),
            vec!["(404 NoSuchBucket)"],
        ),
        (
            tool(
                &garage,
                &[
                    "--restore",
                    &url(&garage, "nope"),
                    new_arg,
                    "--tmp",
                    tmp_arg,
                ],
            ),
            vec!["no backup \"nope\" in s3://", "cairn-backup --list s3://"],
        ),
        (
            tool(&garage, &["--restore", &b1, data_arg, "--tmp", tmp_arg]),
            vec![&held, "stop the service"],
        ),
    ];
    for (output, needles) in cases {
        fails(output, &needles);
        assert_eq!(objects(&garage), stored, "the bucket is unchanged");
        assert!(names(&tmp).is_empty(), "no scratch left: {:?}", names(&tmp));
        assert!(!new_dir.exists(), "no restored directory");
        assert_eq!(
            names(scratch.path()),
            ["data", "tmp"],
            "nothing staged or replaced beside the directory"
        );
    }
    assert_eq!(cli.value("notes", "k"), Value::from(1));

    for usage in [
        &["--verify", "s3://cairn-tests"][..],
        &["--restore", "s3://cairn-tests/p/../b1", new_arg],
        &["--list", "s3://cairn-tests", data_arg],
        &[data_arg, "/b", "--s3-region", "x"],
    ] {
        let output = tool(&garage, usage);
        assert_eq!(output.status.code(), Some(2), "{usage:?}: {output:?}");
    }
    service.stop().unwrap();
}
