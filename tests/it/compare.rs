//! `pgx compare` on real runs of PostgreSQL: a run against itself, identical code run
//! twice, and a pull request that changes a variant's index (the plan changes, and the
//! `--fail-on plan-change` gate must fail), all through the real binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;
use pgx::experiment::result::ExperimentResult;
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::target::Target;

struct Runs {
    dir: tempfile::TempDir,
    old: PathBuf,
    again: PathBuf,
    changed: PathBuf,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/experiments")
        .join(name)
}

fn run(path: &Path) -> ExperimentResult {
    let server = server();
    let target = Target::External(server.cluster().config("postgres"));
    let spec = spec::read(path).unwrap();
    pgx::experiment::run(
        &target,
        &spec,
        &RunOptions::default(),
        &mut Progress::quiet(),
    )
    .unwrap()
}

/// main's run, main's again (identical code), and the pull request's: each written as
/// the JSON `pgx experiment` writes.
fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, r: &ExperimentResult| {
            let path = dir.path().join(name);
            std::fs::write(&path, pgx::report::json::render(r).unwrap()).unwrap();
            path
        };
        let old = write("old.json", &run(&fixture("compare.yaml")));
        let again = write("again.json", &run(&fixture("compare.yaml")));
        let changed = write("changed.json", &run(&fixture("compare-changed.yaml")));
        Runs {
            old,
            again,
            changed,
            dir,
        }
    })
}

fn compare(args: &[&Path], extra: &[&str]) -> std::process::Output {
    let mut cmd = pgx_command(Path::new(env!("CARGO_MANIFEST_DIR")));
    cmd.arg("compare");
    cmd.args(args);
    cmd.args(extra);
    cmd.output().unwrap()
}

const ALL_GATES: &[&str] = &["--fail-on", "regression,plan-change,buffers"];

#[test]
fn a_run_compared_with_itself_is_no_change_and_exits_0() {
    let r = runs();
    let md = r.dir.path().join("self.md");
    let out = compare(
        &[&r.old, &r.old],
        &[ALL_GATES, &["--markdown", md.to_str().unwrap()]].concat(),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains(
        "0 with a changed plan, 0 with changed buffers (exact); on execution time 0 slower and 0 faster beyond noise. 0 new cell(s), 0 vanished. No change."
    ), "{text}");
    assert!(text.contains("Both files hold the same run"), "{text}");
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.starts_with("## pgx compare: `compare`"), "{md}");
    assert!(md.contains("No cell changed its plan"), "{md}");
}

#[test]
fn identical_code_run_twice_gives_no_timing_verdict() {
    let r = runs();
    let out = compare(&[&r.old, &r.again], ALL_GATES);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    // Plans and buffers are exact: identical code on the same data gives the same ones.
    assert!(
        text.contains("0 with a changed plan, 0 with changed buffers"),
        "{text}"
    );
    // Timings move between runs (the machine), but not beyond each run's own A/A floor
    // and the drift the other cells show.
    assert!(
        text.contains("on execution time 0 slower and 0 faster beyond noise"),
        "{text}"
    );
}

#[test]
fn a_changed_plan_is_reported_node_by_node_and_fails_the_plan_gate() {
    let r = runs();
    let md = r.dir.path().join("pr.md");
    let out = compare(&[&r.old, &r.changed], &["--markdown", md.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "no gate asked: {text}");
    assert!(
        text.contains("plans and buffers that changed (exact)"),
        "{text}"
    );
    assert!(
        text.contains("range · p1 · id-index: old → new plan"),
        "{text}"
    );
    assert!(
        text.contains("-   Index Scan using t_id on t")
            || text.contains("-   Bitmap Heap Scan on t"),
        "the old plan's btree scan: {text}"
    );
    assert!(
        text.contains("+     Bitmap Index Scan using t_id_brin"),
        "the new plan's BRIN scan: {text}"
    );
    let md = std::fs::read_to_string(&md).unwrap();
    for needle in [
        "### Plans and buffers (exact)",
        "```diff",
        "| range · p1 · id-index | ",
        "### New cells",
        "| range · p1 · id-covering |",
        "### Vanished cells",
        "| by-k · p1 · same |",
    ] {
        assert!(md.contains(needle), "{needle} not in:\n{md}");
    }

    let out = compare(&[&r.old, &r.changed], &["--fail-on", "plan-change"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("plan-change: range · p1 · id-index")
            && err.contains("plan-change: range · p2 · id-index"),
        "{err}"
    );
    assert!(
        !err.contains("by-k · p1 · id-index"),
        "its plan did not change: {err}"
    );
    // The BRIN scan reads more blocks than the btree did: exact, so it gates too.
    let out = compare(&[&r.old, &r.changed], &["--fail-on", "buffers"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let r = runs();
    let dir = r.dir.path();
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&r.old).unwrap()).unwrap();
    value["schema_version"] = 1.into();
    let old_version = dir.join("v1.json");
    std::fs::write(&old_version, value.to_string()).unwrap();
    value["schema_version"] = 3.into();
    value["experiment"] = "another".into();
    let other = dir.join("other.json");
    std::fs::write(&other, value.to_string()).unwrap();
    let missing = dir.join("missing.json");
    let cases: [(&Path, &str); 3] = [
        (&old_version, "schema_version 1"),
        (&other, "different experiments: compare and another"),
        (&missing, "cannot read"),
    ];
    for (path, needle) in cases {
        let out = compare(&[&r.old, path], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.contains("hint:"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Issue 23: sample times no measurement gives (negative, zero, 1e308) are refused when a
/// report is read, naming the file and the sample, by `pgx compare` and `pgx report`; every
/// committed report still reads.
#[test]
fn impossible_sample_times_are_refused_on_read_naming_the_file() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(repo.join("reports")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(err) = pgx::report::json::parse(&text) {
                panic!("{} no longer reads: {err:#}", path.display());
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::copy(repo.join("reports/trigram-load.json"), &good).unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    let cell = value["cells"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| !c["samples"].as_array().unwrap().is_empty())
        .unwrap();
    let cases = [
        ("execution_ms", serde_json::json!(-1.0), "is -1,"),
        ("execution_ms", serde_json::json!(0.0), "is 0,"),
        ("execution_ms", serde_json::json!(1e308), "is 100000000000"),
        ("planning_ms", serde_json::json!(-0.5), "is -0.5,"),
    ];
    for (field, bad, says) in cases {
        let mut value = value.clone();
        value["cells"][cell]["samples"][0][field] = bad;
        let path = dir.path().join("bad.json");
        std::fs::write(&path, value.to_string()).unwrap();
        for args in [
            vec!["compare", good.to_str().unwrap(), path.to_str().unwrap()],
            vec!["report", path.to_str().unwrap()],
        ] {
            let out = pgx_command(dir.path()).args(&args).output().unwrap();
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?} {field}: {err}");
            assert!(
                err.contains(&format!(
                    "{} is not a pgx experiment result",
                    path.display()
                )) && err.contains(&format!("cells[{cell}]"))
                    && err.contains(&format!("samples[0].{field} {says}"))
                    && err.contains("which no measurement gives"),
                "{args:?} {field}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

/// Issue 23: `pgx report` that cannot write its Markdown names the path (it said only
/// "Permission denied (os error 13)").
#[test]
fn report_into_a_place_it_cannot_write_names_the_path() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("trigram-load.json");
    std::fs::copy(repo.join("reports/trigram-load.json"), &json).unwrap();
    // Where the Markdown goes is a directory: unwritable as a file even for root.
    let md = dir.path().join("trigram-load.md");
    std::fs::create_dir(&md).unwrap();
    let out = pgx_command(dir.path())
        .args(["report", json.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("error: cannot write {}: ", md.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("make {} writable", dir.path().display())),
        "{err}"
    );
    // And a directory without write permission, where that binds (not for root).
    // SAFETY: geteuid only reads.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::remove_dir(&md).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let out = pgx_command(dir.path())
            .args(["report", json.to_str().unwrap()])
            .output()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("cannot write {}: ", md.display())),
            "{err}"
        );
    }
}
