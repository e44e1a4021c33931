//! `python3` with the PyPI packages a test drives (official SDKs, schemathesis, an OpenAPI
//! client generator): as installed, or installed by pip into the target directory, so that
//! `cargo test` alone runs the whole suite on a machine with only python3 and pip.

/// A `python3` command that can import every one of `modules`, installing `packages` with pip
/// into `CARGO_TARGET_TMPDIR/<dir>` when the system's python3 cannot. The directory's `bin`
/// is put first on `PATH` for the packages' command-line tools.
pub async fn python_with(dir: &str, packages: &[&str], modules: &str) -> tokio::process::Command {
    let imports = |path: Option<&str>| {
        let mut check = std::process::Command::new("python3");
        check.args(["-c", &format!("import {modules}")]);
        if let Some(path) = path {
            check.env("PYTHONPATH", path);
        }
        check.output().is_ok_and(|out| out.status.success())
    };
    let mut python = tokio::process::Command::new("python3");
    if imports(None) {
        return python;
    }
    let dir = format!("{}/{dir}", env!("CARGO_TARGET_TMPDIR"));
    if !imports(Some(&dir)) {
        let installed = tokio::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target", &dir])
            .args(packages)
            .status()
            .await
            .expect("python3 with pip (needed to install the test's packages)");
        assert!(installed.success(), "pip install {packages:?} failed");
    }
    let path = std::env::var("PATH").unwrap_or_default();
    python.env("PYTHONPATH", &dir);
    python.env("PATH", format!("{dir}/bin:{path}"));
    python
}
