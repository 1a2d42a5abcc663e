//! The command line as a user meets it: exit codes, broken pipes, bad experiment
//! timeouts, shell completions, the embedded cluster's psql hint, where --out and --dir
//! resolve.

use std::process::Stdio;

use crate::common::*;

/// stdout is a pipe whose reader is already gone (`pgx ... | head -0`): the first write
/// fails with EPIPE. pgx must end quietly with exit 0, never panic.
fn run_with_closed_stdout(cmd: &mut std::process::Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_is_a_normal_exit_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_closed_stdout(pgx_command(dir.path()).args(["completions", "bash"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    let db = TestDb::new("cli_pipe");
    let project = migrations(&[("V1__a.sql", "CREATE TABLE a (id int);\n")]);
    assert!(db.pgx(project.path(), &["apply"]).status.success());
    let out = run_with_closed_stdout(
        pgx_command(project.path())
            .env("DATABASE_URL", db.url())
            .arg("status"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

fn experiment_with_timeout(timeout: &str) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: t\nbaseline: a\ndataset:\n  scale: 1\n  steps:\n    - name: s\n      sql: SELECT 1\n\
         variants:\n  a: {{}}\nqueries:\n  q:\n    sql: SELECT pg_sleep(600)\n\
         runs:\n  repeat: 1\n  timeout: {timeout}\n"
    );
    std::fs::write(dir.path().join("t.yaml"), yaml).unwrap();
    let out = pgx_command(dir.path())
        .args(["experiment", "t.yaml"])
        .output()
        .unwrap();
    (dir, out)
}

#[test]
fn zero_and_absurd_timeouts_are_clear_errors_before_anything_runs() {
    for timeout in ["0s", "0ms", "99999999999999999999999s", "30 days"] {
        let (_dir, out) = experiment_with_timeout(timeout);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{timeout}: {err}");
        assert!(!err.contains("panicked"), "{timeout}: {err}");
        assert!(
            err.contains("t.yaml:15:3:"),
            "points at the timeout line: {err}"
        );
        assert!(
            err.contains("runs.timeout") && err.contains("hint:"),
            "{err}"
        );
    }
}

#[test]
fn help_documents_exit_codes_and_completions_are_generated_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    let out = pgx_command(dir.path()).arg("--help").output().unwrap();
    let help = stdout(&out);
    assert!(help.contains("3 `cluster status`"), "{help}");
    assert!(help.contains("130 interrupted"), "{help}");
    let out = pgx_command(dir.path())
        .args(["cluster", "status", "--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("3 when it is stopped"),
        "{}",
        stdout(&out)
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef pgx"),
        ("fish", "complete -c pgx"),
    ] {
        let out = pgx_command(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("baseline") && script.contains("repair"),
            "{shell}"
        );
    }
}

#[test]
fn cluster_start_prints_a_psql_command_for_a_database_that_exists() {
    let own = OwnCluster::new("cli-start");
    let data_dir = own.0.clone();
    let dir = tempfile::tempdir().unwrap();
    let pgx = |args: &[&str]| {
        pgx_command(dir.path())
            .env("PGX_DATA_DIR", &data_dir)
            .args(args)
            .output()
            .unwrap()
    };
    let out = pgx(&["cluster", "status"]);
    assert_eq!(out.status.code(), Some(3), "not running: exit 3");
    let out = pgx(&["cluster", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let db = text.trim().rsplit(' ').next().unwrap().to_string();
    let cluster = pgx::cluster::Cluster::new(&data_dir).unwrap();
    let mut admin = cluster.config("postgres").connect(postgres::NoTls).unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .unwrap()
        .is_some();
    assert!(exists, "psql hint names {db:?}, which must exist: {text}");
    drop(admin);
    let out = pgx(&["cluster", "status"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(&format!(" {db}")), "{}", stdout(&out));
    assert!(pgx(&["cluster", "destroy"]).status.success());
}

#[test]
fn out_and_dir_defaults_resolve_from_the_project_root_in_a_subdirectory() {
    let db = TestDb::new("cli_root");
    let project = migrations(&[("V1__a.sql", "CREATE TABLE a (id int);\n")]);
    let sub = project.path().join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let out = db.pgx(&sub, &["apply"]);
    assert!(
        out.status.success(),
        "migrations/ found from a subdirectory: {}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("applied 1 migration(s)"));
    // An explicit relative --dir is relative to the working directory.
    let out = db.pgx(&sub, &["status", "--dir", "migrations"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = db.pgx(&sub, &["status", "--dir", "../../migrations"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn every_shipped_experiment_and_fixture_parses_with_the_yaml_parser() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["experiments", "tests/fixtures/experiments"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let spec = pgx::experiment::spec::read(&path)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert!(!spec.name.is_empty());
                n += 1;
            }
        }
    }
    assert!(n >= 11, "{n} files");
}

#[test]
fn every_justfile_recipe_names_a_bench_or_example_that_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let justfile = std::fs::read_to_string(root.join("justfile")).unwrap();
    let mut checked = 0;
    for line in justfile.lines().filter(|l| l.starts_with("    ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            let file = match pair[0] {
                "--bench" => root.join("benches").join(format!("{}.rs", pair[1])),
                "--example" => root.join("examples").join(format!("{}.rs", pair[1])),
                _ => continue,
            };
            assert!(
                file.is_file(),
                "justfile: `{}` needs {}",
                line.trim(),
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the bench recipes are checked");
}

#[test]
fn experiment_reports_go_to_the_project_roots_reports_by_default_and_to_out_as_typed() {
    let db = TestDb::new("cli_out");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("experiments")).unwrap();
    std::fs::create_dir_all(project.path().join("migrations")).unwrap();
    let sub = project.path().join("notes");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(
        project.path().join("experiments/tiny.yaml"),
        "name: tiny\nbaseline: a\ndataset:\n  scale: 1\n  steps:\n    - name: t\n      sql: CREATE TABLE t AS SELECT 1 AS id\n\
         variants:\n  a: {}\nqueries:\n  q:\n    sql: SELECT count(*) FROM t\n\
         runs: { warmup: 0, repeat: 1, timeout: 10s }\n",
    )
    .unwrap();
    // From a subdirectory, by name: experiments/ and reports/ are the project root's.
    let out = db.pgx(&sub, &["experiment", "tiny"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        project.path().join("reports/tiny.md").is_file(),
        "{}",
        stdout(&out)
    );
    assert!(!sub.join("reports").exists());
    // A typed relative --out is relative to the working directory.
    let out = db.pgx(&sub, &["experiment", "tiny", "--out", "here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sub.join("here/tiny.md").is_file(), "{}", stdout(&out));
}

/// Issue 23: `--scale inf` and `--scale 1e300` became generate_series(1,
/// 9223372036854775807) and filled the disk. Scales that are not finite, or whose row
/// counts do not fit a bigint, are refused with the numbers before anything is built: the
/// embedded cluster's directory is not even created.
#[test]
fn infinite_and_overflowing_scales_are_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: t\nbaseline: a\ndataset:\n  scale: 1\n  vars: { rows: 1000 }\n  steps:\n    - name: s\n      sql: SELECT * FROM generate_series(1, {{rows}})\n\
         variants:\n  a: {}\nqueries:\n  q:\n    sql: SELECT 1\n";
    std::fs::write(dir.path().join("t.yaml"), yaml).unwrap();
    let data_dir = dir.path().join("cluster");
    let cases = [
        ("inf", "--scale inf is not a finite number"),
        ("1e300", "dataset.vars.rows 1000 × 1e300 = 1e303"),
        // 1000 × 1e16 = 1e19 rows: more than 9223372036854775807.
        ("1e16", "dataset.vars.rows 1000 × 1e16 = 1e19"),
        ("NaN", "--scale NaN is not a finite number"),
        ("0", "--scale 0 must be above 0"),
    ];
    for (scale, says) in cases {
        for command in ["experiment", "rehearse"] {
            let out = pgx_command(dir.path())
                .arg("--data-dir")
                .arg(&data_dir)
                .args([command, "t.yaml", "--scale", scale])
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{command} {scale}: {err}");
            if command == "rehearse" {
                // No load: section; the scale is checked after that, also before building.
                continue;
            }
            assert!(err.contains(says), "{scale}: {err}");
            if scale.starts_with("1e") {
                assert!(
                    err.contains("more than a bigint holds (9223372036854775807)")
                        && err.contains("nothing was built")
                        && err.contains(
                            "the largest scale this experiment allows is below 9.223372036854776e15"
                        ),
                    "{scale}: {err}"
                );
            }
            assert!(!err.contains("panicked"), "{scale}: {err}");
        }
    }
    assert!(
        !data_dir.exists(),
        "no cluster was started for a refused scale"
    );

    // The same rule for the file's own dataset.scale, pointing at its line.
    std::fs::write(
        dir.path().join("t.yaml"),
        yaml.replace("scale: 1\n", "scale: .inf\n"),
    )
    .unwrap();
    let out = pgx_command(dir.path())
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["experiment", "t.yaml"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("t.yaml:4:3: dataset.scale inf is not a finite number"),
        "{err}"
    );
    assert!(!data_dir.exists());
}

/// Issue 23, item 6: the README's test command does the set-up it needs. It is
/// `scripts/test` (also what `.ci/run` and `just test` run), which installs HypoPG for the
/// server's major version when it is missing: checked here with `--check` against a fake
/// server without it (nothing is installed from a test).
#[test]
fn the_readmes_test_command_installs_what_is_missing_and_ci_runs_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -- experiment index-strategies",
            "scripts/test"
        ],
        "the README's first two commands: pgx's main job, then the tests"
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "scripts/test"),
        ".ci/run runs the README's test command"
    );
    let justfile = std::fs::read_to_string(root.join("justfile")).unwrap();
    assert!(justfile.contains("test:\n    scripts/test\n"), "{justfile}");

    // A server of major version 15 whose share directory has contrib but no HypoPG.
    let fake = tempfile::tempdir().unwrap();
    let bin = fake.path().join("bin");
    let share = fake.path().join("share");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(share.join("extension")).unwrap();
    for ext in ["pg_trgm", "pgstattuple"] {
        std::fs::write(share.join(format!("extension/{ext}.control")), "").unwrap();
    }
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("postgres", "echo 'postgres (PostgreSQL) 15.99'");
    script("initdb", "exit 0");
    script("pg_config", &format!("echo '{}'", share.display()));
    let check = || {
        std::process::Command::new(root.join("scripts/test"))
            .arg("--check")
            .env("PGX_PG_BINDIR", &bin)
            .output()
            .unwrap()
    };
    let out = check();
    let said = stderr(&out);
    assert!(
        said.contains(&format!("PostgreSQL 15 at {}", bin.display())),
        "{said}"
    );
    assert!(
        said.contains("would run: ")
            && said.contains("apt-get install -y -qq postgresql-15-hypopg")
            || said.contains("missing: postgresql-15-hypopg; install them"),
        "installs HypoPG for the server's major version, or says how: {said}"
    );

    std::fs::write(share.join("extension/hypopg.control"), "").unwrap();
    let out = check();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("HypoPG for PostgreSQL 15: present")
            && !said.contains("install")
            && said.contains("would run: cargo test"),
        "{said}"
    );
}

// ---------------------------------------------------------------------------------------
// The house (issue 22): rules of the code that a newcomer relies on, checked on the source.

/// Every `.rs` file under `src/`, with its path relative to `src/` and its text without
/// comments and without its `#[cfg(test)] mod tests` (tests may reach anywhere).
fn source_files() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let text = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => &text[..i],
                    None => &text[..],
                };
                let code: String = text
                    .lines()
                    .map(|l| match l.trim_start() {
                        t if t.starts_with("//") => "",
                        _ => l,
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, code));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// The top-level module a file belongs to: `experiment/engine/mod.rs` -> `experiment`.
fn top_module(rel: &str) -> &str {
    rel.split('/').next().unwrap().trim_end_matches(".rs")
}

#[test]
fn the_modules_import_downwards_only_with_no_circle() {
    let files = source_files();
    let tops: std::collections::BTreeSet<&str> =
        files.iter().map(|(rel, _)| top_module(rel)).collect();
    let path = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let group = regex::Regex::new(r"use crate::\{([^}]*)\}").unwrap();
    let word = regex::Regex::new(r"\b([a-z_]+)\b").unwrap();
    let mut edges: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
        Default::default();
    let mut offenders = Vec::new();
    for (rel, code) in &files {
        let from = top_module(rel);
        let mut names: Vec<String> = path.captures_iter(code).map(|c| c[1].to_string()).collect();
        for g in group.captures_iter(code) {
            names.extend(word.captures_iter(&g[1]).map(|c| c[1].to_string()));
        }
        for to in names {
            if to == from || !tops.contains(to.as_str()) || matches!(to.as_str(), "main" | "lib") {
                continue;
            }
            // Only the top (main, app) and the commands read the command line, and
            // nothing imports the top.
            let top_only = matches!(to.as_str(), "app" | "commands" | "cli");
            let allowed = match to.as_str() {
                "app" => from == "main",
                "commands" => from == "app",
                "cli" => matches!(from, "app" | "commands" | "main"),
                _ => true,
            };
            if top_only && !allowed {
                offenders.push(format!("src/{rel} imports crate::{to}"));
            }
            edges.entry(from).or_default().insert(to);
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
    // No circle between top-level modules: every module can be read knowing only those
    // it imports.
    fn visit<'a>(
        node: &'a str,
        edges: &'a std::collections::BTreeMap<&str, std::collections::BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(i) = stack.iter().position(|n| *n == node) {
            panic!("import circle: {} -> {node}", stack[i..].join(" -> "));
        }
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done);
        }
        stack.pop();
        done.insert(node);
    }
    let mut done = Default::default();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
    // The ground floor imports nothing of pgx.
    for ground in [
        "exit", "units", "host", "output", "db", "sqlsplit", "yaml", "explain", "stats",
    ] {
        assert!(
            edges.get(ground).is_none_or(|e| e.is_empty()),
            "src/{ground} is the ground floor but imports {:?}",
            edges.get(ground)
        );
    }
}

#[test]
fn every_message_goes_through_the_output_layer() {
    let raw = regex::Regex::new(r"\b(e?print(ln)?!|dbg!)\s*\(").unwrap();
    let found: Vec<String> = source_files()
        .iter()
        // The output layer itself, and the Ctrl-C handler, which runs on a signal thread
        // and must not take the output lock.
        .filter(|(rel, _)| rel != "output.rs" && rel != "interrupt.rs")
        .flat_map(|(rel, code)| {
            code.lines()
                .enumerate()
                .filter(|(_, l)| raw.is_match(l))
                .map(|(i, l)| format!("src/{rel}:{}: {}", i + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "use say! (stdout) or note! (stderr) from src/output.rs: {found:#?}"
    );
}

/// `cargo test` links one integration-test binary: every `.rs` file directly under
/// `tests/` would be a binary of its own (each linking the whole crate), so the areas
/// are modules of `tests/it/main.rs`, and every file in `tests/it/` is one of them.
#[test]
fn the_integration_tests_are_one_binary_with_a_module_per_area() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let binaries: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs") || p.join("main.rs").is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        binaries,
        vec![root.join("it").display().to_string()],
        "one test binary, tests/it"
    );
    let main = std::fs::read_to_string(root.join("it/main.rs")).unwrap();
    for entry in std::fs::read_dir(root.join("it")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "main") {
            assert!(
                main.lines().any(|l| l == format!("mod {module};")),
                "tests/it/{name} is not a module of tests/it/main.rs: its tests never run"
            );
        }
    }
}

/// Every `pgx ...` command in the README's and docs' shell blocks names a subcommand the
/// binary has: its `--help` succeeds.
#[test]
fn every_documented_command_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    docs.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut commands = std::collections::BTreeSet::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for block in text.split("```sh\n").skip(1) {
            let block = block.split("```").next().unwrap();
            for line in block.lines() {
                let line = line.split(" #").next().unwrap().trim();
                for part in line.split("&&") {
                    let words: Vec<&str> = part.split_whitespace().collect();
                    let args: &[&str] = match words.as_slice() {
                        ["pgx", rest @ ..] => rest,
                        ["cargo", "run", "--release", "--", rest @ ..] => rest,
                        _ => continue,
                    };
                    let mut sub = vec![args[0].to_string()];
                    if args[0] == "cluster" {
                        sub.push(args[1].to_string());
                    }
                    commands.insert((sub, doc.file_name().unwrap().to_string_lossy().into_owned()));
                }
            }
        }
    }
    assert!(commands.len() >= 10, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    for (sub, doc) in &commands {
        let out = pgx_command(dir.path())
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{doc}: `pgx {} --help` fails: {}",
            sub.join(" "),
            stderr(&out)
        );
    }
}

#[test]
fn the_readme_fits_in_a_sitting() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 400,
        "{} lines",
        readme.lines().count()
    );
    for linked in [
        "ARCHITECTURE.md",
        "docs/method.md",
        "docs/experiments.md",
        "docs/reference.md",
    ] {
        assert!(readme.contains(linked), "the README links {linked}");
        assert!(root.join(linked).is_file(), "{linked} exists");
    }
}

/// The README's experiment example is a real experiment: run as written (at a small
/// scale), its index is found faster, with a plan that differs.
#[test]
fn the_readmes_experiment_example_runs_and_answers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let yaml = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let db = TestDb::new("cli_readme");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("experiments")).unwrap();
    std::fs::create_dir_all(project.path().join("migrations")).unwrap();
    std::fs::write(project.path().join("experiments/lookup.yaml"), yaml).unwrap();
    let out = db.pgx(project.path(), &["experiment", "lookup", "--scale", "0.05"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json =
        std::fs::read_to_string(project.path().join("reports/lookup-scale0.05.json")).unwrap();
    let result = pgx::report::json::parse(&json).unwrap();
    let cell = result
        .cells
        .iter()
        .find(|c| c.variant == "by-parent")
        .unwrap();
    assert_eq!(
        cell.evidence.map(|e| e.same_plan),
        Some(false),
        "the index changes the plan"
    );
    assert_eq!(
        cell.change.as_ref().map(|c| c.verdict),
        Some(pgx::stats::Verdict::Faster),
        "{}",
        stdout(&out)
    );
}

/// Every committed report is what the committed renderer draws from its JSON: none was
/// edited by hand, and none is stale after a renderer change (re-render with `pgx report`).
#[test]
fn every_committed_report_is_its_json_rendered_by_this_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reports");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let json = std::fs::read_to_string(&path).unwrap();
        let result =
            pgx::report::json::parse(&json).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let others = pgx::report::other_scales(&dir, &result);
        let drawn = pgx::report::markdown::render_with(&result, &others);
        let md_path = path.with_extension("md");
        let committed = std::fs::read_to_string(&md_path).unwrap();
        if drawn != committed {
            let first = drawn
                .lines()
                .zip(committed.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(drawn.lines().count().min(committed.lines().count()));
            panic!(
                "{} is not its JSON as this code renders it (first difference at line {}): \
                 run `pgx report {}`",
                md_path.display(),
                first + 1,
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} reports");
}
