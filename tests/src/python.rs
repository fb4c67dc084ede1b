//! The Python side of the tests: the scripts in `tests/python/` and the interpreter of the tests'
//! own virtual environment.

use std::path::PathBuf;
use std::process::Command;

use crate::daemon::profile_dir;
use crate::tools::sh;

/// The Python scripts and the pinned requirements.
pub const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python");

/// The interpreter of the tests' own virtual environment, with grpcio and h2 from PyPI at the
/// versions in `tests/python/requirements.txt`; created on first use (scripts/test creates it too,
/// at the same path: `tmp/pyenv` in the target directory).
pub fn python() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .expect("the target directory")
        .join("tmp/pyenv");
    sh(Command::new(format!("{PYTHON_DIR}/venv")).arg(&dir));
    dir.join("bin/python")
}

/// The version of `package` that `requirements.txt` pins.
pub fn pinned(package: &str) -> String {
    let requirements = std::fs::read_to_string(format!("{PYTHON_DIR}/requirements.txt")).unwrap();
    requirements
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{package}==")))
        .unwrap_or_else(|| panic!("{package} is not pinned"))
        .to_string()
}
