//! The plugin author guide (`plugins/README.md`) works as written: its step 4, the shell commands
//! that load the guide's plugin into a running broker and drive records through it, runs verbatim
//! against a real `rill serve` (the CLI finds the broker through `RILL_BOOTSTRAP` and
//! `RILL_ADMIN`, as an operator's shell would).

use std::path::Path;
use std::process::Command;

use rill_tests::Running;

/// The ```sh block that follows `marker` in the guide.
fn shell_block_after(guide: &str, marker: &str) -> String {
    let from = guide.find(marker).unwrap_or_else(|| panic!("the guide has {marker:?}"));
    let start = from + guide[from..].find("```sh\n").expect("a shell block follows") + "```sh\n".len();
    let end = start + guide[start..].find("```").expect("the block ends");
    guide[start..end].lines().map(|line| format!("{}\n", line.trim_start())).collect()
}

#[test]
fn step_4_of_the_author_guide_runs_as_written() {
    let guide = include_str!("../../plugins/README.md");
    let script = shell_block_after(guide, "4. With the broker running");
    assert!(script.contains("rill pipeline create"), "{script}");

    // The guide runs at the repository root, where `cargo xtask plugins` left the component.
    let root = tempfile::tempdir().unwrap();
    let components = root.path().join("plugins/target/plugins");
    std::fs::create_dir_all(&components).unwrap();
    std::fs::copy(rill_tests::plugin_file("drop-short"), components.join("drop-short.wasm")).unwrap();

    let data = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(data.path()));
    let (kafka, http) = (rill.kafka_addr(), rill.http_addr());
    let bin_dir = rill_tests::rill_bin().parent().map(Path::to_owned).expect("the binary's directory");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(root.path())
        .env("PATH", path)
        .env("RILL_BOOTSTRAP", &kafka)
        .env("RILL_ADMIN", format!("http://{http}"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the guide's commands failed:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let consumed: Vec<&str> = stdout.lines().filter(|l| *l == "abcd" || *l == "xyz").collect();
    assert_eq!(consumed, ["abcd", "xyz"], "as the guide says; stdout:\n{stdout}");
    assert!(stdout.contains("drop-short@0.1.0"), "{stdout}");
    rill.stop();
}
