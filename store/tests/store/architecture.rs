//! The shape of the workspace, checked on its sources.
//!
//! Inside `store`, the layers point one way: import and export share the vocabulary at the bottom
//! and neither names the other; import never touches the metadata database (the facade commits
//! what import found); the store knows nothing of gRPC. The bottom layer (`image`, `referrer`,
//! `digest`, `error`, `reference`) names nothing above it.
//!
//! In every crate of the workspace: no source file over 450 lines and no production function over
//! 80. A file counts whole, its test module too. Test code is what the compiler leaves out of a
//! production build, and its functions may be longer: items under `#[cfg(test)]`, functions marked
//! `#[test]` (or `#[tokio::test]`), files declared as `#[cfg(test)] mod x;`, and the crates'
//! `tests/` directories, which are not read at all.
//!
//! Every check lists all it finds before failing, so one run shows the whole work left.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

const MAX_FILE_LINES: usize = 450;
const MAX_FUNCTION_LINES: usize = 80;

/// The store's bottom layer: the vocabulary every other module speaks.
const BOTTOM: [&str; 5] = ["image", "referrer", "digest", "error", "reference"];

fn src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("store sits in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The code of every `.rs` file under `dir`, comments left out, with its path.
fn code_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let out: Vec<(PathBuf, String)> = rust_files(dir)
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            (path, code)
        })
        .collect();
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

/// Fails with every violation found, one a line.
fn assert_none(what: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{} {what}:\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}

fn assert_never_names(dir: &str, module: &str) {
    let paths = [format!("crate::{module}"), format!("super::{module}")];
    let mut found = Vec::new();
    for (path, code) in code_under(&src(dir)) {
        for p in paths.iter().filter(|p| code.contains(p.as_str())) {
            found.push(format!("{} names {p}", path.display()));
        }
    }
    assert_none(&format!("names of {module} in {dir}"), found);
}

/// Grouped `crate::{…}` imports would hide a dependency from the checks below, and the store's
/// style is to import each name from the module that defines it.
#[test]
fn modules_import_from_the_defining_module() {
    let grouped = code_under(&src(""))
        .into_iter()
        .filter(|(_, code)| code.contains("crate::{"))
        .map(|(path, _)| format!("{} imports through crate::{{…}}", path.display()))
        .collect();
    assert_none("grouped imports", grouped);
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

/// The bottom layer names only itself: `crate::x` in its files is one of them. (`super::` in a
/// file at the crate's top level is only written by its own test module, for the file itself.)
#[test]
fn the_bottom_layer_names_nothing_above_it() {
    let mut found = Vec::new();
    for module in BOTTOM {
        let path = src(&format!("{module}.rs"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        for named in code.iter().flat_map(|l| l.split("crate::").skip(1)) {
            let name: String = named
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !BOTTOM.contains(&name.as_str()) {
                found.push(format!("{} names crate::{named}", path.display()));
            }
        }
    }
    assert_none("names above the bottom layer", found);
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

/// The workspace's member crates, as the root manifest lists them.
fn members() -> Vec<PathBuf> {
    let root = workspace();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let list = manifest
        .split_once("\nmembers")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("the workspace lists its members")
        .0;
    let members: Vec<PathBuf> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|m| root.join(m))
        .collect();
    assert!(
        members.iter().any(|m| m.ends_with("store")) && members.len() > 1,
        "members read wrong from {list:?}"
    );
    members
}

/// Every source file of every member: `src/` and the build script; not `tests/`.
fn production_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for member in members() {
        files.extend(rust_files(&member.join("src")));
        files.extend(Some(member.join("build.rs")).filter(|b| b.exists()));
    }
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn no_source_file_grows_past_450_lines() {
    let mut long = Vec::new();
    for path in production_sources() {
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        if lines > MAX_FILE_LINES {
            long.push(format!("{}: {lines} lines", relative(&path)));
        }
    }
    assert_none(&format!("files over {MAX_FILE_LINES} lines"), long);
}

#[test]
fn no_production_function_grows_past_80_lines() {
    let sources = production_sources();
    let parsed: Vec<(PathBuf, syn::File)> = sources
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let file =
                syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", relative(&path)));
            (path, file)
        })
        .collect();
    let test_files: HashSet<PathBuf> = parsed
        .iter()
        .flat_map(|(path, file)| test_module_files(path, file))
        .collect();
    let mut long = Vec::new();
    for (path, file) in &parsed {
        if test_files.iter().any(|t| path.starts_with(t)) {
            continue;
        }
        let mut functions = Functions {
            path: relative(path),
            long: Vec::new(),
        };
        functions.visit_file(file);
        long.extend(functions.long);
    }
    assert_none(&format!("functions over {MAX_FUNCTION_LINES} lines"), long);
}

/// Whether attributes mark test code: `#[cfg(test)]`, `#[test]`, `#[tokio::test]`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let path = a.path();
        let cfg_test =
            path.is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test");
        cfg_test || path.segments.last().is_some_and(|s| s.ident == "test")
    })
}

/// The files (`x.rs`, or the directory `x/`) of the modules `path` declares as `#[cfg(test)] mod
/// x;`.
fn test_module_files(path: &Path, file: &syn::File) -> Vec<PathBuf> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = path.parent().unwrap();
    let children = if matches!(stem, "mod" | "lib" | "main") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if m.content.is_none() && is_test(&m.attrs) => Some(&m.ident),
            _ => None,
        })
        .flat_map(|name| {
            [
                children.join(format!("{name}.rs")),
                children.join(name.to_string()),
            ]
        })
        .collect()
}

/// Measures every function outside test code, from its signature to its closing brace.
struct Functions {
    path: String,
    long: Vec<String>,
}

impl Functions {
    fn measure(&mut self, sig: &syn::Signature, body: &syn::Block) {
        let first = sig.span().start().line;
        let last = body.span().end().line;
        let lines = last + 1 - first;
        if lines > MAX_FUNCTION_LINES {
            let name = &sig.ident;
            self.long
                .push(format!("{}:{first}: fn {name}: {lines} lines", self.path));
        }
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_test(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            self.measure(&f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            self.measure(&f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let (false, Some(body)) = (is_test(&f.attrs), &f.default) {
            self.measure(&f.sig, body);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}
