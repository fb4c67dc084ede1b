//! docker's `images --filter`: `reference=PATTERN` and `dangling=true|false`. Pure.

use glob::{MatchOptions, Pattern};

use crate::error::{Error, Result};
use crate::reference::ImageName;

/// Which rows of the listing to keep. Several `reference` patterns keep a row matching any of
/// them; `reference` and `dangling` together keep a row matching both, as docker does.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    references: Vec<Pattern>,
    dangling: Option<bool>,
}

/// As Go's `path.Match`, which docker uses: `*` and `?` never cross a `/`.
const PATH_MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl ListFilter {
    /// Parses docker's `KEY=VALUE` filters. An unknown key, a malformed pattern or a `dangling`
    /// other than `true` or `false` is [`Error::InvalidArgument`].
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self> {
        let mut filter = ListFilter::default();
        for f in filters {
            let f = f.as_ref();
            let invalid =
                |why: &str| Error::InvalidArgument(format!("invalid filter {f:?}: {why}"));
            let (key, value) = f
                .split_once('=')
                .ok_or_else(|| invalid("expected KEY=VALUE"))?;
            match key {
                "reference" => filter
                    .references
                    .push(Pattern::new(value).map_err(|e| invalid(&e.to_string()))?),
                "dangling" => {
                    filter.dangling = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(invalid("dangling is true or false")),
                    })
                }
                _ => return Err(invalid("the filters are reference and dangling")),
            }
        }
        Ok(filter)
    }

    /// Whether the row named `name` (`None`: untagged) is kept. A pattern matches docker's
    /// familiar form with the tag (`busybox:latest`, `quay.io/org/app:1`) or without it.
    pub fn keeps(&self, name: Option<&ImageName>) -> bool {
        if let Some(dangling) = self.dangling
            && dangling != name.is_none()
        {
            return false;
        }
        if self.references.is_empty() {
            return true;
        }
        let Some(name) = name else { return false };
        let repository = name.familiar_repository();
        let with_tag = format!("{repository}:{}", name.tag());
        self.references.iter().any(|p| {
            p.matches_with(&with_tag, PATH_MATCH) || p.matches_with(&repository, PATH_MATCH)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(filters: &[&str], name: Option<&str>) -> bool {
        let name: Option<ImageName> = name.map(|n| n.parse().unwrap());
        ListFilter::parse(filters).unwrap().keeps(name.as_ref())
    }

    #[test]
    fn reference_matches_the_familiar_name_with_or_without_its_tag() {
        assert!(keeps(&["reference=busybox"], Some("busybox:1")));
        assert!(keeps(
            &["reference=busybox:1"],
            Some("docker.io/library/busybox:1")
        ));
        assert!(!keeps(&["reference=busybox:2"], Some("busybox:1")));
        assert!(keeps(&["reference=scale/*"], Some("scale/img1:v1")));
        assert!(keeps(&["reference=*:v1"], Some("app:v1")));
        // `*` stops at a slash, as in Go's path.Match.
        assert!(!keeps(&["reference=*"], Some("scale/img1:v1")));
        assert!(keeps(&["reference=*/*"], Some("scale/img1:v1")));
        assert!(keeps(
            &["reference=quay.io/org/*"],
            Some("quay.io/org/app:1")
        ));
        assert!(!keeps(&["reference=busybox"], None));
        assert!(keeps(&["reference=a", "reference=b"], Some("b:1")));
    }

    #[test]
    fn dangling_keeps_untagged_rows_or_only_tagged_ones() {
        assert!(keeps(&["dangling=true"], None));
        assert!(!keeps(&["dangling=true"], Some("a:1")));
        assert!(keeps(&["dangling=false"], Some("a:1")));
        assert!(!keeps(&["dangling=false"], None));
        assert!(keeps(&[], None));
    }

    #[test]
    fn malformed_filters_are_invalid_arguments() {
        for f in ["dangling=maybe", "label=x", "reference", "reference=[a"] {
            assert!(
                matches!(ListFilter::parse(&[f]), Err(Error::InvalidArgument(_))),
                "{f}"
            );
        }
    }
}
