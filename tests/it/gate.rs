//! Gating a pull request on one runner (`pgx experiment --against REV --fail-on`), and an
//! experiment spread over runners (`--shard K/N`, `pgx merge`), through the real binary.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use pgx::experiment::ExperimentResult;
use pgx::experiment::result::Key;
use pgx::stats::Verdict;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "pgx test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "pgx test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EXPERIMENT: &str = r#"
name: lookup
about: Lookups by parent and by kind
dataset:
  scale: 1
  vars: { rows: 100000 }
  steps:
    - name: items
      sql: INSERT INTO items SELECT g, g % 1000, g % 5000, md5(g::text) FROM generate_series(1, {{rows}}) g
baseline: current
variants:
  current: { about: as it is }
queries:
  by-parent:
    sql: SELECT count(*) FROM items WHERE parent = $1
    params: [[7]]
  by-kind:
    sql: SELECT count(*) FROM items WHERE kind = $1
    params: [[7]]
"#;

/// A project in a git repository: one commit with the table and an index on `kind`.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("migrations")).unwrap();
    std::fs::create_dir_all(root.join("experiments")).unwrap();
    std::fs::write(
        root.join("migrations/V1__items.sql"),
        "CREATE TABLE items (id bigint PRIMARY KEY, parent int, kind int, payload text);\n\
         CREATE INDEX items_kind ON items (kind);\n",
    )
    .unwrap();
    std::fs::write(root.join("experiments/lookup.yaml"), EXPERIMENT).unwrap();
    git(root, &["init", "-q"]);
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "items"]);
    dir
}

fn report(path: &Path) -> ExperimentResult {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pgx::report::json::parse(&text).unwrap()
}

fn verdict(r: &ExperimentResult, variant: &str, query: &str) -> Option<Verdict> {
    r.cells
        .iter()
        .find(|c| c.variant == variant && c.query == query)
        .unwrap_or_else(|| panic!("no cell {variant} · {query}"))
        .change
        .map(|c| c.verdict)
}

/// The pull request adds an index one query needs and drops one another query uses:
/// measured against the revision before it, in one run, one is faster, the other slower,
/// and `--fail-on regression` fails. Against its own revision (a pull request that
/// changes nothing) there is no timing verdict at all.
#[test]
fn a_pull_request_is_measured_against_its_base_revision_in_one_run() {
    let db = TestDb::new("gate_against");
    let project = project();
    let root = project.path();
    std::fs::write(
        root.join("migrations/V2__parent_index.sql"),
        "-- pgx:no-transaction\nCREATE INDEX CONCURRENTLY items_parent ON items (parent);\n",
    )
    .unwrap();
    std::fs::write(
        root.join("migrations/V3__drop_kind_index.sql"),
        "DROP INDEX items_kind;\n",
    )
    .unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "the pull request"]);

    let out = db.pgx(
        root,
        &[
            "experiment",
            "lookup",
            "--against",
            "HEAD~1",
            "--fail-on",
            "regression",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = report(&root.join("reports/lookup-against-head-1.json"));
    assert_eq!(r.baseline, "head-1");
    let candidate = "head-1-to-worktree";
    assert_eq!(
        verdict(&r, candidate, "by-parent"),
        Some(Verdict::Faster),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        verdict(&r, candidate, "by-kind"),
        Some(Verdict::Slower),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("V2__parent_index.sql, V3__drop_kind_index.sql"),
        "{err}"
    );
    assert!(
        err.contains("head-1-to-worktree · by-kind") && err.contains("slower"),
        "{err}"
    );

    // The A/A question: nothing pending, nothing changed, no timing verdict, exit 0.
    let out = db.pgx(
        root,
        &[
            "experiment",
            "lookup",
            "--against",
            "HEAD",
            "--fail-on",
            "regression,plan-change,buffers",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = report(&root.join("reports/lookup-against-head.json"));
    for cell in r
        .compared_cells()
        .filter(|c| c.variant == "head-to-worktree")
    {
        assert!(
            cell.change.is_none_or(|c| c.verdict == Verdict::NoChange),
            "{} {}: {:?}",
            cell.variant,
            cell.query,
            cell.change
        );
        assert!(cell.untimed.is_some(), "same evidence: not timed");
    }
}

/// A query the pull request rewrote is compared as two forms: the revision's first.
#[test]
fn a_changed_query_is_compared_old_form_against_new() {
    let db = TestDb::new("gate_forms");
    let project = project();
    let root = project.path();
    let changed = EXPERIMENT.replace(
        "SELECT count(*) FROM items WHERE kind = $1",
        "SELECT count(*) FROM items WHERE kind + 0 = $1",
    );
    std::fs::write(root.join("experiments/lookup.yaml"), changed).unwrap();
    let out = db.pgx(root, &["experiment", "lookup", "--against", "HEAD"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed queries, old and new form: by-kind"));
    let r = report(&root.join("reports/lookup-against-head.json"));
    let forms: Vec<&str> = r
        .cells
        .iter()
        .filter(|c| c.variant == "head-to-worktree" && c.query == "by-kind")
        .map(|c| c.form.as_str())
        .collect();
    assert_eq!(forms, ["head", "worktree"]);
    // The rewritten query cannot search the index (it reads all of it): slower than the old.
    let new = r
        .cells
        .iter()
        .find(|c| c.variant == "head-to-worktree" && c.query == "by-kind" && c.form == "worktree")
        .unwrap();
    let evidence = new.evidence.expect("compared with the old form");
    assert!(
        evidence.blocks > 10 * evidence.reference_blocks,
        "{evidence:?}"
    );
    let reference = new.reference.map(|i| &r.cells[i]).unwrap();
    assert_eq!(
        (reference.variant.as_str(), reference.form.as_str()),
        ("head", "head")
    );
    assert_eq!(new.change.map(|c| c.verdict), Some(Verdict::Slower));
}

/// What --against refuses: a revision that does not exist, a migration the revision has
/// whose content the working tree changed, a directory outside git. Nothing is built.
#[test]
fn against_refuses_what_it_cannot_compare() {
    let db = TestDb::new("gate_refuse");
    let project = project();
    let root = project.path();
    let out = db.pgx(
        root,
        &["experiment", "lookup", "--against", "no-such-branch"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no such revision"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        root.join("migrations/V1__items.sql"),
        "CREATE TABLE items (id bigint PRIMARY KEY, parent int, kind int, payload text, extra int);\n",
    )
    .unwrap();
    let out = db.pgx(root, &["experiment", "lookup", "--against", "HEAD"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("V1__items.sql differs from its version at HEAD"),
        "{err}"
    );
    assert!(err.contains("new migration"), "{err}");

    let plain = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(plain.path().join("experiments")).unwrap();
    std::fs::create_dir_all(plain.path().join("migrations")).unwrap();
    std::fs::write(plain.path().join("experiments/lookup.yaml"), EXPERIMENT).unwrap();
    let out = db.pgx(plain.path(), &["experiment", "lookup", "--against", "HEAD"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not in a git repository"),
        "{}",
        stderr(&out)
    );
    assert!(!plain.path().join("reports").exists());
}

const SHARDED: &str = r#"
name: split
about: Three candidates, split over runners
dataset:
  vars: { rows: 100000 }
  steps:
    - name: items
      sql: |
        CREATE TABLE items (id bigint, parent int, kind int, payload text);
        INSERT INTO items SELECT g, g % 1000, g % 5000, md5(g::text) FROM generate_series(1, {{rows}}) g
baseline: none
variants:
  none: { about: no index }
  by-parent: { sql: CREATE INDEX items_parent ON items (parent) }
  by-kind: { sql: CREATE INDEX items_kind ON items (kind) }
  by-id: { sql: CREATE INDEX items_id ON items (id) }
queries:
  by-parent:
    sql: SELECT count(*) FROM items WHERE parent = $1
    params: [[7]]
  by-kind:
    sql: SELECT count(*) FROM items WHERE kind = $1
    params: [[7]]
"#;

/// Run unsharded, and as two shards on two servers; merged, the shards give every cell of
/// the unsharded run, the same evidence and the same verdicts where the effect is large.
/// Shards of different scales, a shard twice and a missing shard are refused.
#[test]
fn shards_on_two_servers_merge_into_the_unsharded_report() {
    let db = TestDb::new("gate_shards");
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    std::fs::create_dir_all(root.join("experiments")).unwrap();
    std::fs::create_dir_all(root.join("migrations")).unwrap();
    std::fs::write(root.join("experiments/split.yaml"), SHARDED).unwrap();

    let out = db.pgx(root, &["experiment", "split"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = report(&root.join("reports/split.json"));

    let out = db.pgx(root, &["experiment", "split", "--shard", "1/2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("shard 1/2: by-parent, by-id"),
        "{}",
        stdout(&out)
    );
    // The second shard on an embedded cluster of its own: another server.
    let own = OwnCluster::new("shard2");
    let out = pgx_command(root)
        .env("PGX_DATA_DIR", &own.0)
        .args(["experiment", "split", "--shard", "2/2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let one = root.join("reports/split-shard1of2.json");
    let two = root.join("reports/split-shard2of2.json");
    let merged_dir = root.join("merged");
    let out = pgx_command(root)
        .args(["merge"])
        .arg(&one)
        .arg(&two)
        .arg("--out")
        .arg(&merged_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let merged = report(&merged_dir.join("split.json"));
    assert_eq!(merged.shards.len(), 2);
    let md = std::fs::read_to_string(merged_dir.join("split.md")).unwrap();
    assert!(md.contains("| Shards | merged from 2 shards"), "{md}");

    let keys = |r: &ExperimentResult| -> Vec<Key> {
        let mut k: Vec<Key> = r.compared_cells().map(Key::of).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&merged), keys(&whole), "every cell, once");
    for cell in whole.compared_cells().filter(|c| c.reference.is_some()) {
        let ours = merged
            .compared_cells()
            .find(|c| Key::of(c) == Key::of(cell))
            .unwrap();
        let (a, b) = (cell.evidence.unwrap(), ours.evidence.unwrap());
        assert_eq!(a.same_plan, b.same_plan, "{:?}", Key::of(cell));
        assert!(
            !pgx::explain::counts_differ(a.blocks, b.blocks),
            "{:?}: {} against {}",
            Key::of(cell),
            a.blocks,
            b.blocks
        );
        // The reference is the baseline's cell of the same query in the merged report too.
        let reference = ours.reference.map(|i| &merged.cells[i]);
        assert_eq!(
            reference.map(|c| (c.variant.as_str(), c.query.as_str())),
            Some((merged.baseline.as_str(), cell.query.as_str()))
        );
    }
    for (variant, query) in [("by-parent", "by-parent"), ("by-kind", "by-kind")] {
        assert_eq!(verdict(&whole, variant, query), Some(Verdict::Faster));
        assert_eq!(verdict(&merged, variant, query), Some(Verdict::Faster));
    }

    // Refused: a shard twice, a missing shard, shards of different scales.
    let refuse = |args: &[&Path], expect: &str| {
        let out = pgx_command(root)
            .arg("merge")
            .args(args)
            .arg("--out")
            .arg(root.join("refused"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{}", stderr(&out));
        assert!(!root.join("refused").exists(), "nothing written");
    };
    refuse(&[&one, &one], "given twice");
    // A shard missing, a shard of another pgx, an interrupted shard.
    let edited = |from: &Path, name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(from).unwrap()).unwrap();
        edit(&mut value);
        let path = root.join(name);
        std::fs::write(&path, serde_json::to_string(&value).unwrap()).unwrap();
        path
    };
    let of_three = |k: u64| {
        move |v: &mut serde_json::Value| {
            v["shard"] = serde_json::json!({ "k": k, "n": 3 });
        }
    };
    let first_of_three = edited(&one, "1of3.json", &of_three(1));
    let second_of_three = edited(&two, "2of3.json", &of_three(2));
    refuse(&[&first_of_three, &second_of_three], "shard 3/3 missing");
    let other_pgx = edited(&two, "other-pgx.json", &|v| {
        v["environment"]["pgx_version"] = "0.0.1".into();
    });
    refuse(&[&one, &other_pgx], "pgx 0.0.1");
    let interrupted = edited(&two, "interrupted.json", &|v| {
        v["interrupted"] = true.into()
    });
    refuse(&[&one, &interrupted], "did not finish");
    refuse(&[&one, &root.join("reports/split.json")], "not a shard");
    let out = db.pgx(
        root,
        &["experiment", "split", "--shard", "2/2", "--scale", "0.5"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    refuse(
        &[&one, &root.join("reports/split-scale0.5-shard2of2.json")],
        "scale 0.5 against 1",
    );
    let out = db.pgx(root, &["experiment", "split", "--shard", "4/4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("has no variant"), "{}", stderr(&out));
}

/// The CI recipe and the sharded example in docs/ci.md are valid YAML, and every pgx
/// command in them parses as the binary parses it.
#[test]
fn the_workflow_runs_commands_the_binary_accepts() {
    use clap::Parser;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let recipe =
        std::fs::read_to_string(root.join(".github/workflows/pgx-experiment.yml")).unwrap();
    let docs = std::fs::read_to_string(root.join("docs/ci.md")).unwrap();
    let sharded = docs
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/ci.md has the matrix example");
    let mut commands = Vec::new();
    for text in [recipe.as_str(), sharded] {
        let workflow: serde_json::Value = serde_saphyr::from_str(text).expect("valid YAML");
        for job in workflow["jobs"].as_object().expect("jobs").values() {
            for step in job["steps"].as_array().expect("steps") {
                let Some(run) = step["run"].as_str() else {
                    continue;
                };
                // Continuation lines joined; each line's `pgx` command, after `--` of cargo run.
                for line in run.replace("\\\n", " ").lines() {
                    if let Some(at) = line.find("cargo run --release --") {
                        let rest = &line[at + "cargo run --release --".len()..];
                        let rest = rest.split(['|', '>', ';']).next().unwrap_or("");
                        commands.push(rest.trim().to_string());
                    }
                }
            }
        }
    }
    assert!(
        commands.iter().any(|c| c.contains("--against")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("merge")),
        "{commands:?}"
    );
    for command in &commands {
        let words: Vec<String> = std::iter::once("pgx".to_string())
            .chain(
                command
                    .replace("${{ matrix.shard }}", "1")
                    .split_whitespace()
                    .map(|w| {
                        w.trim_matches('"')
                            .replace("$EXPERIMENT", "index-strategies")
                            .replace("$RUNNER_TEMP", "/tmp")
                            .replace("$GITHUB_BASE_REF", "main")
                    }),
            )
            .collect();
        if let Err(e) = pgx::cli::Cli::try_parse_from(&words) {
            panic!("{command}: {e}");
        }
    }
}
