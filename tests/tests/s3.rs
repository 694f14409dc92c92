//! End to end: backups in S3-compatible object storage, with a real garage server on
//! 127.0.0.1 (see `cairn_tests::garage`), the real `cairn-service` and the real `cairn`
//! CLI. A backup job uploads one archive (in several parts) and its manifest, `backup
//! list` shows it, a restore brings its data back; a restore names a backup, never a URL;
//! a wrong key or a missing bucket ends the job FAILED with the server's refusal; a
//! canceled upload leaves nothing in the bucket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_tests::cli::Endpoint;
use cairn_tests::garage::{Garage, REGION};
use cairn_tests::process::ServiceProcess;
use serde_json::Value;

/// The prefix the services of these tests keep their backups under.
const PREFIX: &str = "cairn/db1";

/// A working directory whose `cairn.toml` sends backups to `garage`; the credentials are
/// in the file when `secret` is given, else they come from the environment.
fn working_dir(scratch: &Path, garage: &Garage, secret: Option<&str>) -> PathBuf {
    let dir = scratch.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings = format!(
        "[backup]\nurl = \"s3://{}/{PREFIX}\"\n\n[backup.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\n",
        garage.bucket, garage.endpoint
    );
    if let Some(secret) = secret {
        settings.push_str(&format!(
            "access_key_id = \"{}\"\nsecret_access_key = \"{secret}\"\n",
            garage.key_id
        ));
    }
    std::fs::write(dir.join("cairn.toml"), settings).unwrap();
    dir
}

/// Starts a service on `dir` with the test key in its environment.
fn start(dir: &Path, garage: &Garage) -> ServiceProcess {
    let env = garage.aws_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::start_with_env(dir, &[], &env).unwrap()
}

/// Loads `batches` batches of 2000 documents of 2 KiB of random letters (which compress
/// little: the archive of 2 batches takes more than one upload part) into `db`.
fn load(cli: &Endpoint, db: &str, batches: usize) {
    const LETTERS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-";
    // xorshift64*: fast enough in a debug build, and random enough for zstd.
    let mut state: u64 = rand::random::<u64>() | 1;
    let mut filler = vec![0u8; 2048];
    for b in 0..batches {
        let mut lines = String::with_capacity(2000 * 2100);
        for i in 0..2000 {
            for chunk in filler.chunks_mut(8) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                for (j, byte) in chunk.iter_mut().enumerate() {
                    *byte = LETTERS[(bits >> (j * 6) & 63) as usize];
                }
            }
            let filler = std::str::from_utf8(&filler).expect("letters");
            lines.push_str(&format!(
                "{{\"op\":\"put\",\"key\":\"r{b}-{i:05}\",\"value\":\"{filler}\"}}\n"
            ));
        }
        cli.run_with_stdin(&["batch", db], &lines).ok();
    }
}

/// The bucket's objects under the test prefix.
fn objects(garage: &Garage) -> Vec<(String, u64)> {
    garage.objects(PREFIX).unwrap()
}

fn json(run: cairn_tests::cli::Run) -> Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}): {:?} {:?}",
            run.command, run.stdout, run.stderr
        )
    })
}

#[test]
fn a_backup_goes_to_s3_and_a_restore_brings_it_back() {
    let garage = Garage::start().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = working_dir(scratch.path(), &garage, None);
    let service = start(&dir, &garage);
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["put", "notes", "kept", "\"before\""]).ok();
    load(&cli, "notes", 2);

    let done = cli
        .run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let archive_url = format!("s3://{}/{PREFIX}/b1.tar.zst", garage.bucket);
    assert_eq!(done["location"], archive_url.as_str());
    assert!(done["progress"]["total"].as_u64().unwrap() > 0);
    let stored = objects(&garage);
    let names: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{PREFIX}/b1.manifest.json"),
            format!("{PREFIX}/b1.tar.zst")
        ],
        "{stored:?}"
    );
    assert!(
        stored[1].1 > 8 << 20,
        "the archive took more than one part: {stored:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.join("tmp")).unwrap().count(),
        0,
        "the local copy is gone"
    );
    assert!(!dir.join("backups/b1").exists());

    let list = cli.run(&["-o", "json", "backup", "list"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "b1");
    assert_eq!(list[0]["location"], archive_url.as_str());
    assert_eq!(list[0]["databases"], 1);
    let again = cli.run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"]);
    assert_eq!(again.code, 1);
    let again = json(again);
    assert_eq!(again["status"], "FAILED");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{again}"
    );
    assert_eq!(
        objects(&garage).len(),
        2,
        "the existing backup is untouched"
    );

    // After the backup: a change and a new document.
    cli.run(&["put", "notes", "kept", "\"after\""]).ok();
    cli.run(&["put", "notes", "later", "1"]).ok();

    // Restore names a backup of the service's own location, never a URL or a path.
    for outside in [
        "s3://other-bucket/cairn/db1/b1.tar.zst",
        archive_url.as_str(),
        "cairn/db1/b1",
        "../b1",
    ] {
        cli.run(&["restore", "start", outside])
            .fails(1, "a service restores only from its own backup location");
    }
    let missing = json(cli.run(&["-o", "json", "restore", "start", "nope", "--wait"]));
    assert_eq!(missing["status"], "FAILED", "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no backup \"nope\""),
        "{missing}"
    );
    assert_eq!(cli.value("notes", "kept"), Value::from("after"));

    let restored = cli
        .run(&["-o", "json", "restore", "start", "b1", "--wait"])
        .ok()
        .json();
    assert_eq!(restored["status"], "COMPLETED", "{restored}");
    assert_eq!(restored["location"], archive_url.as_str());
    assert_eq!(cli.value("notes", "kept"), Value::from("before"));
    cli.run(&["get", "notes", "later"]).fails(1, "not_found");
    let info = cli.run(&["-o", "json", "db", "info", "notes"]).ok().json();
    assert_eq!(info["doc_count"], 4001);
    assert_eq!(
        std::fs::read_dir(dir.join("tmp"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("restore-"))
            .count(),
        0,
        "the download is gone"
    );

    cli.run(&["backup", "delete", "b1"]).ok();
    assert_eq!(objects(&garage), Vec::new());
    cli.run(&["backup", "delete", "b1"]).fails(1, "not_found");
    let (status, _) = service.stop().unwrap();
    assert!(status.success());
}

#[test]
fn a_wrong_key_fails_the_job_with_the_server_s_refusal() {
    let garage = Garage::start().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // The file's key wins over the (right) one in the environment.
    let dir = working_dir(scratch.path(), &garage, Some(&"0".repeat(64)));
    let service = start(&dir, &garage);
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "notes"]).ok();
    cli.run(&["put", "notes", "k", "1"]).ok();

    let failed = cli.run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let job = json(failed);
    assert_eq!(job["status"], "FAILED", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the object store refused it (403"),
        "{message}"
    );
    assert!(
        message.contains("signature"),
        "garage's own words: {message}"
    );
    let details: Value = serde_json::from_str(job["error"]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["s3_status"], 403, "{details}");
    assert!(details["s3_code"].is_string(), "{details}");
    assert_eq!(
        std::fs::read_dir(dir.join("tmp")).unwrap().count(),
        0,
        "the local copy is gone"
    );
    assert_eq!(objects(&garage), Vec::new());

    cli.run(&["backup", "list"])
        .fails(1, "the object store refused it (403");
    let restore = json(cli.run(&["-o", "json", "restore", "start", "b1", "--wait"]));
    assert_eq!(restore["status"], "FAILED", "{restore}");
    assert_eq!(cli.value("notes", "k"), Value::from(1));
    service.stop().unwrap();

    // The right key and a bucket that does not exist: the server says so.
    let settings = std::fs::read_to_string(dir.join("cairn.toml")).unwrap();
    let settings = settings
        .replace(&format!("s3://{}/", garage.bucket), "s3://no-such-bucket/")
        .replace(&"0".repeat(64), &garage.secret);
    std::fs::write(dir.join("cairn.toml"), settings).unwrap();
    let service = start(&dir, &garage);
    let cli = Endpoint::unix(&service);
    let job = json(cli.run(&["-o", "json", "backup", "start", "--name", "b1", "--wait"]));
    assert_eq!(job["status"], "FAILED", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("(404 NoSuchBucket)"), "{message}");
    let restore = json(cli.run(&["-o", "json", "restore", "start", "b1", "--wait"]));
    assert!(
        restore["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NoSuchBucket"),
        "{restore}"
    );
    service.stop().unwrap();
}

#[test]
fn a_canceled_upload_leaves_nothing_behind() {
    let garage = Garage::start().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = working_dir(scratch.path(), &garage, None);
    let service = start(&dir, &garage);
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "big"]).ok();
    load(&cli, "big", 4);

    let job = cli
        .run(&["-o", "json", "backup", "start", "--name", "b1"])
        .ok()
        .json();
    let id = job["id"].as_u64().unwrap().to_string();
    // Cancel once the upload has begun, so that a multipart upload is under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = cli.run(&["-o", "json", "jobs", "show", &id]).ok().json();
        let message = now["progress"]["message"].as_str().unwrap_or("");
        if message.starts_with("uploading") {
            break;
        }
        assert_eq!(
            now["status"].as_str().map(|s| s == "COMPLETED"),
            Some(false),
            "{now}"
        );
        assert!(
            Instant::now() < deadline,
            "the upload began within 20 s: {now}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cli.run(&["jobs", "cancel", &id]).ok();
    let ended = json(cli.run(&["-o", "json", "jobs", "wait", &id]));
    assert_eq!(ended["status"], "CANCELED", "{ended}");
    assert_eq!(objects(&garage), Vec::new());
    assert_eq!(
        garage.unfinished_uploads().unwrap(),
        0,
        "the multipart upload was aborted"
    );
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);

    // The service goes on: the next backup completes.
    let done = cli
        .run(&["-o", "json", "backup", "start", "--name", "b2", "--wait"])
        .ok()
        .json();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    service.stop().unwrap();
}
