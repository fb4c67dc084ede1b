//! The dependency direction inside `store`, checked on its sources: import and export share the
//! vocabulary in `image.rs` and neither names the other; import never touches the metadata
//! database (the facade commits what import found); the store knows nothing of gRPC.

use std::path::{Path, PathBuf};

fn src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)
}

/// The code of every `.rs` file under `dir`, comments left out, with its path.
fn code_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(code_under(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.push((path, code));
        }
    }
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

fn assert_never_names(dir: &str, module: &str) {
    let paths = [format!("crate::{module}"), format!("super::{module}")];
    for (path, code) in code_under(&src(dir)) {
        for p in &paths {
            assert!(
                !code.contains(p.as_str()),
                "{} names {p}: {dir} must not depend on {module}",
                path.display()
            );
        }
    }
}

/// Grouped `crate::{…}` imports would hide a dependency from the checks below, and the store's
/// style is to import each name from the module that defines it.
#[test]
fn modules_import_from_the_defining_module() {
    for (path, code) in code_under(&src("")) {
        assert!(
            !code.contains("crate::{"),
            "{} imports through crate::{{…}}",
            path.display()
        );
    }
}

#[test]
fn export_does_not_depend_on_import() {
    assert_never_names("export", "import");
}

#[test]
fn import_depends_neither_on_export_nor_on_the_database() {
    assert_never_names("import", "export");
    assert_never_names("import", "meta");
}

/// Content writes stand beside import: the facade adds leases and metadata.
#[test]
fn content_depends_neither_on_import_export_nor_the_database() {
    assert_never_names("content", "import");
    assert_never_names("content", "export");
    assert_never_names("content", "meta");
}

#[test]
fn the_store_depends_on_no_grpc_crate() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap();
    let deps = deps.split("\n[").next().unwrap();
    for grpc in ["tonic", "prost", "hyper", "h2"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(grpc)),
            "store depends on {grpc}"
        );
    }
}

#[test]
fn no_source_file_grows_past_450_lines() {
    for (path, _) in code_under(&src("")) {
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 450, "{} has {lines} lines", path.display());
    }
}
